/*
 * params.h - request parameters from a query string, an urlencoded form or
 * a JSON object, with the rules of SPEC sections 2 and 3.
 *
 * Only the parameters the API knows are kept; others are ignored. A known
 * parameter given twice (even once in the query and once in the body) is a
 * 400.
 */
#ifndef CHAT_PARAMS_H
#define CHAT_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "valid.h"

enum params_key { P_TEXT, P_USER, P_ROOM, P_CID, P_INDEX, P_LIMIT, P_TAIL, P_WAIT, P_COUNT };

/* Sets of keys, one bit per enum params_key. */
#define PARAMS_KEY(k)     (1u << (k))
#define PARAMS_SEND_KEYS  (PARAMS_KEY(P_TEXT) | PARAMS_KEY(P_USER) | PARAMS_KEY(P_ROOM) | PARAMS_KEY(P_CID))

struct params_val {
    const char *s;        /* decoded bytes, may hold NUL; NULL when absent */
    size_t len;
};

struct params {
    struct params_val v[P_COUNT];
    char *store;          /* owns decoded urlencoded values */
    size_t store_used, store_size;
    struct json_object *json;   /* owns values that came from JSON */
};

/* An empty set. Can't fail. */
void params_init(struct params *p);
/* Releases what the set owns; safe on an initialised empty set. */
void params_free(struct params *p);

/*
 * Reserves room for decoding len bytes of urlencoded input in all (values
 * borrow from that room, so it never moves). Called once, before the first
 * params_add_urlencoded(), when more than one string will be added; a lone
 * add reserves for itself. Returns 0, or CHAT_EUNAVAIL when out of memory.
 */
int params_reserve(struct params *p, size_t len);

/*
 * Adds the pairs of an urlencoded string s[0..len) ("+" is a space, %XX a
 * byte). Returns 0, or CHAT_EBADREQ (bad escape, repeated parameter) with the
 * reason in *f.
 */
int params_add_urlencoded(struct params *p, const char *s, size_t len, struct chat_fail *f);

/*
 * Adds the members of a JSON object s[0..len) named in keys (a set of
 * PARAMS_KEY bits); other members are ignored whatever their type. Returns
 * 0, or CHAT_EBADREQ (not JSON, not an object, a member of keys that is not
 * a string, a top-level key given twice: any key, known or not, compared
 * after unescaping) with the reason in *f.
 */
int params_add_json(struct params *p, const char *s, size_t len, unsigned keys,
                    struct chat_fail *f);


/* Fills *m from a set and applies valid_send(). Returns 0 or the refusal. */
int params_send(const struct params *p, struct valid_send *m, struct chat_fail *f);

/*
 * Reads a WebSocket client frame s[0..len) (a JSON object with text, user
 * and cid; other keys ignored) as a send to room: fills *p (release with
 * params_free) and *m, and applies the rules of /send/msg. Returns 0 or the
 * refusal in *f.
 */
int params_ws_frame(struct params *p, const char *s, size_t len, const char *room,
                    size_t room_len, struct valid_send *m, struct chat_fail *f);

/*
 * Applies the name nginx authenticated, auth[0..auth_len) (NULL or empty:
 * nobody), to a send that passed params_send (SPEC section 7): an empty
 * user becomes that name, an equal one stays, a different one is refused
 * with CHAT_EFORBIDDEN; so is a name that breaks the rules of user. m->user
 * may then point at auth, which must outlive *m. Returns 0 or the refusal.
 */
int params_auth_user(struct valid_send *m, const char *auth, size_t auth_len, struct chat_fail *f);

/* What /get/msg was asked for. */
struct get_args {
    const char *room; size_t room_len;
    int64_t index;        /* messages with id > index */
    int limit;            /* 1..CHAT_LIMIT_MAX */
    int tail;             /* 0, or the last `tail` messages instead of index */
    int wait;             /* seconds, 0..CHAT_WAIT_MAX */
};

/* Fills *g from a set with defaults and bounds. Returns 0 or CHAT_EBADREQ. */
int params_get(const struct params *p, struct get_args *g, struct chat_fail *f);

/*
 * Adds one decoded argument, name=value (a push URL's, which libwebsockets
 * has decoded already): a known name given twice is CHAT_EBADREQ with *f
 * set, an unknown one is ignored. The set keeps value: it must outlive it.
 */
int params_add_pair(struct params *p, const char *name, size_t name_len, const char *value,
                    size_t value_len, struct chat_fail *f);

/* What a push subscriber (/ws, /events) asks for: the rules of /get/msg. */
struct sub_args {
    const char *room; size_t room_len;
    int64_t index;        /* replay the messages with id > index ... */
    int tail;             /* ... or, when > 0, the last `tail` */
    bool live;            /* neither given: live messages only */
};

/* Fills *a from a set. Returns 0 or CHAT_EBADREQ with *f set. */
int params_subscribe(const struct params *p, struct sub_args *a, struct chat_fail *f);

#endif
