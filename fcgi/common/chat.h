/*
 * chat.h - error codes shared by every module.
 *
 * Functions return 0 on success or one of these negative codes. Each code is
 * named after the HTTP status it becomes, and reply.c is the one place that
 * turns a code into a status line and a JSON error.
 */
#ifndef CHAT_H
#define CHAT_H

enum chat_err {
    CHAT_OK        = 0,
    CHAT_EBADREQ   = -400,   /* missing or invalid parameter, bad UTF-8, bad JSON */
    CHAT_EFORBIDDEN = -403,  /* an Origin outside the allow-list; a user other than the login */
    CHAT_ENOTFOUND = -404,   /* unknown API path */
    CHAT_EMETHOD   = -405,   /* method not allowed on this path */
    CHAT_ETOOBIG   = -413,   /* text over CHAT_TEXT_MAX or body over CHAT_BODY_MAX */
    CHAT_EMEDIA    = -415,   /* unsupported content type */
    CHAT_ETOOMANY  = -429,   /* rate limited */
    CHAT_EINTERNAL = -500,   /* a bug or an impossible state */
    CHAT_EUNAVAIL  = -503,   /* database busy or unwritable, or too many held requests */
};

/* The HTTP status of an error code (200 for CHAT_OK). Can't fail. */
static inline int chat_err_status(int err) { return err == 0 ? 200 : -err; }

/* A refusal: the code and the words that tell the client what is wrong. */
struct chat_fail {
    int code;
    char msg[160];
};

/* Fills *f and returns code, so that callers can `return chat_fail(f, ...)`. */
int chat_fail(struct chat_fail *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
