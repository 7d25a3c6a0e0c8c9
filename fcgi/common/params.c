/*
 * params.c - query string, form and JSON body decoding with limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat_limits.h"
#include "json_names.h"
#include "json_strict.h"
#include "params.h"
#include "util.h"

static const char *const key_names[P_COUNT] = {
    [P_TEXT] = "text", [P_USER] = "user", [P_ROOM] = "room", [P_CID] = "cid",
    [P_INDEX] = "index", [P_LIMIT] = "limit", [P_TAIL] = "tail", [P_WAIT] = "wait",
};

void params_init(struct params *p)
{
    memset(p, 0, sizeof *p);
}

void params_free(struct params *p)
{
    free(p->store);
    if (p->json)
        json_object_put(p->json);
    params_init(p);
}

int params_reserve(struct params *p, size_t len)
{
    if (p->store)
        return p->store_size - p->store_used >= len ? 0 : CHAT_EINTERNAL;
    p->store_size = len ? len : 1;
    p->store = malloc(p->store_size);
    return p->store ? 0 : CHAT_EUNAVAIL;
}

static int key_find(const char *k, size_t len)
{
    for (int i = 0; i < P_COUNT; i++)
        if (strlen(key_names[i]) == len && memcmp(key_names[i], k, len) == 0)
            return i;
    return -1;
}

/* The parameter a JSON name is, for json_names_check's refusal. */
static const char *known_param(const char *name, size_t len)
{
    int key = key_find(name, len);
    return key >= 0 ? key_names[key] : NULL;
}

/* Decodes s[0..len) into out (room for len bytes). Returns the decoded length or -1. */
static long url_decode(const char *s, size_t len, char *out)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            out[n++] = ' ';
        } else if (s[i] == '%') {
            int hi, lo;
            if (i + 2 >= len)
                return -1;
            hi = util_hexval(s[i + 1]);
            lo = util_hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = s[i];
        }
    }
    return (long)n;
}

static int set_value(struct params *p, int key, const char *s, size_t len, struct chat_fail *f)
{
    if (p->v[key].s)
        return chat_fail(f, CHAT_EBADREQ, "parameter %s is given more than once", key_names[key]);
    p->v[key].s = s;
    p->v[key].len = len;
    return 0;
}

int params_add_urlencoded(struct params *p, const char *s, size_t len, struct chat_fail *f)
{
    char keybuf[16];

    if (len == 0)
        return 0;
    if (!p->store && params_reserve(p, len) < 0)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    if (p->store_size - p->store_used < len)
        return chat_fail(f, CHAT_EINTERNAL, "parameter storage reserved too small");
    for (size_t i = 0; i < len; ) {
        size_t end = i, eq;
        long klen, vlen;
        int key;

        while (end < len && s[end] != '&')
            end++;
        for (eq = i; eq < end && s[eq] != '='; eq++)
            ;
        if (eq - i >= sizeof keybuf) {
            key = -1;             /* longer than any known name */
        } else if ((klen = url_decode(s + i, eq - i, keybuf)) < 0) {
            return chat_fail(f, CHAT_EBADREQ, "bad percent-encoding in a parameter name");
        } else {
            key = key_find(keybuf, (size_t)klen);
        }
        if (key >= 0) {
            const char *v = eq < end ? s + eq + 1 : s + end;
            char *out = p->store + p->store_used;
            vlen = url_decode(v, (size_t)(s + end - v), out);
            if (vlen < 0)
                return chat_fail(f, CHAT_EBADREQ, "bad percent-encoding in parameter %s", key_names[key]);
            p->store_used += (size_t)vlen;
            if (set_value(p, key, out, (size_t)vlen, f) < 0)
                return f->code;
        }
        i = end + 1;
    }
    return 0;
}

int params_add_json(struct params *p, const char *s, size_t len, unsigned keys,
                    struct chat_fail *f)
{
    struct json_tokener *tok;
    struct json_object *root;
    enum json_tokener_error jerr;
    size_t used, members;
    int err;

    if (p->json)
        return chat_fail(f, CHAT_EINTERNAL, "JSON decoded twice");
    if (len > CHAT_BODY_MAX)
        return chat_fail(f, CHAT_ETOOBIG, "body is larger than %d bytes", CHAT_BODY_MAX);
    /* What json-c would take that RFC 8259 does not: NaN, 1., a raw newline in a string. */
    if ((err = json_strict_check(s, len, f)) < 0)
        return err;
    if (!(tok = json_tokener_new()))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    root = json_tokener_parse_ex(tok, s, (int)len);
    jerr = json_tokener_get_error(tok);
    used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (!root || jerr != json_tokener_success) {
        json_object_put(root);
        return chat_fail(f, CHAT_EBADREQ, "not valid JSON: %s",
                         jerr == json_tokener_continue ? "unexpected end" : json_tokener_error_desc(jerr));
    }
    for (; used < len; used++) {
        if (s[used] != ' ' && s[used] != '\t' && s[used] != '\n' && s[used] != '\r') {
            json_object_put(root);
            return chat_fail(f, CHAT_EBADREQ, "not valid JSON: data after the object");
        }
    }
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return chat_fail(f, CHAT_EBADREQ, "JSON must be an object");
    }
    p->json = root;
    /* json-c kept the last of each repeated name: the scan tells whether there was one. */
    if ((err = json_names_check(s, len, &members, known_param, f)) < 0)
        return err;
    if (members != (size_t)json_object_object_length(root))
        return chat_fail(f, CHAT_EBADREQ, "a JSON key is given more than once");
    json_object_object_foreach(root, k, v) {
        int key = key_find(k, strlen(k));
        if (key < 0 || !(keys & PARAMS_KEY(key)))
            continue;
        if (!json_object_is_type(v, json_type_string))
            return chat_fail(f, CHAT_EBADREQ, "%s must be a JSON string", key_names[key]);
        if (set_value(p, key, json_object_get_string(v),
                      (size_t)json_object_get_string_len(v), f) < 0)
            return f->code;
    }
    return 0;
}

int params_send(const struct params *p, struct valid_send *m, struct chat_fail *f)
{
    m->text = p->v[P_TEXT].s;
    m->text_len = p->v[P_TEXT].len;
    m->user = p->v[P_USER].s ? p->v[P_USER].s : "";
    m->user_len = p->v[P_USER].len;
    m->room = p->v[P_ROOM].s ? p->v[P_ROOM].s : CHAT_DEFAULT_ROOM;
    m->room_len = p->v[P_ROOM].s ? p->v[P_ROOM].len : strlen(CHAT_DEFAULT_ROOM);
    m->cid = p->v[P_CID].s;
    m->cid_len = p->v[P_CID].len;
    return valid_send(m, f);
}

int params_ws_frame(struct params *p, const char *s, size_t len, const char *room,
                    size_t room_len, struct valid_send *m, struct chat_fail *f)
{
    int err;

    /* The room is the connection's, whatever the frame says. */
    if ((err = params_add_json(p, s, len, PARAMS_SEND_KEYS & ~PARAMS_KEY(P_ROOM), f)) < 0)
        return err;
    p->v[P_ROOM].s = room;
    p->v[P_ROOM].len = room_len;
    return params_send(p, m, f);
}

/* Parses an optional integer parameter in [min, max] into *out. */
static int int_param(const struct params *p, int key, int64_t min, int64_t max,
                     int64_t *out, struct chat_fail *f)
{
    const struct params_val *v = &p->v[key];

    if (!v->s)
        return 0;
    if (!util_parse_int(v->s, v->len, min, max, out))
        return chat_fail(f, CHAT_EBADREQ, "%s must be a whole number from %lld to %lld",
                         key_names[key], (long long)min, (long long)max);
    return 0;
}

/* The rules /get/msg, /ws and /events share: room, index and tail. */
static int room_index_tail(const struct params *p, const char **room, size_t *room_len,
                           int64_t *index, int64_t *tail, struct chat_fail *f)
{
    if (int_param(p, P_INDEX, 0, CHAT_INDEX_MAX, index, f) < 0 ||
        int_param(p, P_TAIL, 1, CHAT_TAIL_MAX, tail, f) < 0)
        return f->code;
    *room = p->v[P_ROOM].s ? p->v[P_ROOM].s : CHAT_DEFAULT_ROOM;
    *room_len = p->v[P_ROOM].s ? p->v[P_ROOM].len : strlen(CHAT_DEFAULT_ROOM);
    if (!valid_name(*room, *room_len))
        return chat_fail(f, CHAT_EBADREQ, "room must match [A-Za-z0-9_.-]{1,%d}", CHAT_NAME_MAX);
    return 0;
}

int params_get(const struct params *p, struct get_args *g, struct chat_fail *f)
{
    int64_t index = 0, limit = CHAT_LIMIT_DEFAULT, tail = 0, wait = 0;
    const struct params_val *w = &p->v[P_WAIT];

    if (room_index_tail(p, &g->room, &g->room_len, &index, &tail, f) < 0 ||
        int_param(p, P_LIMIT, 1, CHAT_LIMIT_MAX, &limit, f) < 0)
        return f->code;
    if (w->s) {
        /* Any whole number is accepted for wait; above the maximum it is clamped. */
        bool digits = w->len > 0;
        for (size_t i = 0; i < w->len; i++)
            digits = digits && w->s[i] >= '0' && w->s[i] <= '9';
        if (!digits)
            return chat_fail(f, CHAT_EBADREQ, "wait must be a whole number of seconds from 0 to %d",
                             CHAT_WAIT_MAX);
        if (!util_parse_int(w->s, w->len, 0, CHAT_WAIT_MAX, &wait))
            wait = CHAT_WAIT_MAX;
    }
    g->index = index;
    g->limit = (int)limit;
    g->tail = (int)tail;
    g->wait = (int)wait;
    return 0;
}

int params_add_pair(struct params *p, const char *name, size_t name_len, const char *value,
                    size_t value_len, struct chat_fail *f)
{
    int key = key_find(name, name_len);
    return key < 0 ? 0 : set_value(p, key, value, value_len, f);
}

int params_subscribe(const struct params *p, struct sub_args *a, struct chat_fail *f)
{
    int64_t index = 0, tail = 0;

    if (room_index_tail(p, &a->room, &a->room_len, &index, &tail, f) < 0)
        return f->code;
    a->index = index;
    a->tail = (int)tail;
    a->live = !p->v[P_INDEX].s && !p->v[P_TAIL].s;
    return 0;
}

int params_auth_user(struct valid_send *m, const char *auth, size_t auth_len, struct chat_fail *f)
{
    int err;

    if (!auth || auth_len == 0)
        return 0;                 /* nobody logged in: user is a free display name */
    if (auth_len > CHAT_USER_MAX)
        return chat_fail(f, CHAT_EFORBIDDEN, "the name you are logged in with is over %d bytes: "
                         "it cannot be stored as a user", CHAT_USER_MAX);
    if ((err = valid_chars("the name you are logged in with", auth, auth_len, f)) < 0)
        return f->code = CHAT_EFORBIDDEN;
    if (m->user_len == 0) {
        m->user = auth;
        m->user_len = auth_len;
        return 0;
    }
    if (m->user_len != auth_len || memcmp(m->user, auth, auth_len) != 0)
        return chat_fail(f, CHAT_EFORBIDDEN, "user must be the name you are logged in with "
                         "(or left out)");
    return 0;
}
