/*
 * valid.h - the character and length rules of SPEC section 2, shared by
 * chat-fcgi and chat-ws so that a message is judged the same way on every
 * transport.
 */
#ifndef CHAT_VALID_H
#define CHAT_VALID_H

#include <stdbool.h>
#include <stddef.h>

#include "chat.h"

/* A message as a client sends it; pointers borrow the caller's buffers. */
struct valid_send {
    const char *text; size_t text_len;
    const char *user; size_t user_len;     /* "" when absent */
    const char *room; size_t room_len;     /* CHAT_DEFAULT_ROOM when absent */
    const char *cid;  size_t cid_len;      /* NULL when absent */
};

/*
 * True when s[0..len) is well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF).
 */
bool valid_utf8(const char *s, size_t len);

/* The length of the well-formed UTF-8 character at s[0..len), or 0 (none, or ill-formed). */
size_t valid_utf8_char(const char *s, size_t len);

/*
 * Checks a display text or name: valid UTF-8 with no NUL and no control
 * character other than tab and newline (C0, DEL and C1 are refused).
 * Returns 0 or CHAT_EBADREQ with the reason in *f ("what" names the field).
 */
int valid_chars(const char *what, const char *s, size_t len, struct chat_fail *f);

/* True when s[0..len) matches [A-Za-z0-9_.-]{1,64}: a room or a cid. */
bool valid_name(const char *s, size_t len);

/*
 * Applies every rule of SPEC section 2 to a send: text required, 1 to 4096
 * bytes (413 above), user at most 64 bytes, room and cid names. Returns 0,
 * CHAT_EBADREQ or CHAT_ETOOBIG with the reason in *f.
 */
int valid_send(const struct valid_send *m, struct chat_fail *f);

/* Bytes that valid_send_copy() needs for m's strings. */
size_t valid_send_size(const struct valid_send *m);
/*
 * Copies m's strings, each NUL-terminated, into buf (valid_send_size(m)
 * bytes) and sets *out to borrow them: a message that outlives its request.
 */
void valid_send_copy(const struct valid_send *m, char *buf, struct valid_send *out);

#endif
