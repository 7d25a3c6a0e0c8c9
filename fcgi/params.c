/*
 * params.c - query string, form and JSON body decoding with limits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "chat_limits.h"
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

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
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
            hi = hexval(s[i + 1]);
            lo = hexval(s[i + 2]);
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

/* ---- the top-level names of a JSON object ----
 *
 * json-c keeps one member per name (the last) and has no hook to say that a
 * name came twice; SPEC section 5 makes a repeated top-level name a 400. So
 * params_json_names() reads the names of a text json-c has already accepted,
 * with json-c's own grammar: a name in double or single quotes (json-c takes
 * 'name' even in strict mode), a value skipped whole (strings first, then
 * brackets by depth), so that names inside nested values do not count. A
 * name is decoded as json-c decodes it (\uXXXX to UTF-8, a surrogate pair to
 * one character, a lone surrogate to U+FFFD, the short escapes) and names
 * are compared bytewise, after sorting. Every read is bounded by len and
 * every step moves forward, so any input ends, JSON or not.
 */

struct json_name {
    const char *s;        /* decoded, in the buffer of params_json_names() */
    size_t len;
    size_t pos;           /* rank in the object */
};

static bool json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && json_ws(s[i]))
        i++;
    return i;
}

/* The string whose quote is at s[i]: the index after its closing quote, or len. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    char q = s[i++];

    while (i < len && s[i] != q)
        i += s[i] == '\\' ? 2 : 1;
    return i < len ? i + 1 : len;
}

/* The value starting at s[i]: the index of the ',' or '}' that ends it, or len. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    size_t depth = 0;

    while (i < len) {
        char c = s[i];
        if (c == '"' || c == '\'') {
            i = skip_string(s, len, i);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            depth--;
        } else if (c == ',' && depth == 0) {
            return i;
        }
        i++;
    }
    return len;
}

/* Four hex digits at s[i..i+4) into *cp; false when they are not there. */
static bool hex4(const char *s, size_t len, size_t i, unsigned *cp)
{
    unsigned v = 0;

    if (len < 4 || i > len - 4)
        return false;
    for (size_t k = 0; k < 4; k++) {
        int h = hexval(s[i + k]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    *cp = v;
    return true;
}

/* Writes code point cp (at most U+10FFFF) as UTF-8; returns the bytes written. */
static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decodes the string whose quote is at s[i] into out, which has room for as
 * many bytes as the string takes in s (decoding never lengthens: 2 bytes of
 * escape give 1, 6 give at most 3, 12 give 4). Sets *n to the decoded
 * length; returns the index after the closing quote, or len.
 */
static size_t decode_string(const char *s, size_t len, size_t i, char *out, size_t *n)
{
    char q = s[i++];
    size_t o = 0;

    while (i < len && s[i] != q) {
        unsigned cp, lo;
        char e;

        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        if (i + 1 >= len) {
            i = len;
            break;
        }
        e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u':
            if (!hex4(s, len, i, &cp)) {
                out[o++] = 'u';          /* not JSON: json-c refuses it */
                break;
            }
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < len && s[i] == '\\' && s[i + 1] == 'u' &&
                hex4(s, len, i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;             /* a lone surrogate, as json-c reads it */
            }
            o += put_utf8(out + o, cp);
            break;
        default:                         /* '"', '\\', '/' (and what json-c refuses) */
            out[o++] = e;
            break;
        }
    }
    *n = o;
    return i < len ? i + 1 : len;
}

/* Orders names by length, then bytes, then rank, so equal names sit together, first one first. */
static int name_cmp(const void *a, const void *b)
{
    const struct json_name *x = a, *y = b;
    int c;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->len && (c = memcmp(x->s, y->s, x->len)) != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Writes name s[0..len) into out[0..size) for an error message: quotes,
 * backslashes and control characters escaped as in JSON, cut at a character
 * boundary with "..." when longer than fits. size is at least 8.
 */
static void name_for_msg(const char *s, size_t len, char *out, size_t size)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x20 ? 6 : c == '"' || c == '\\' ? 2 : 1;
        if (o + need > size - 4)
            break;
        if (c < 0x20) {
            snprintf(out + o, 7, "\\u%04x", c);
        } else if (need == 2) {
            out[o] = '\\';
            out[o + 1] = (char)c;
        } else {
            out[o] = (char)c;
        }
        o += need;
    }
    if (i < len) {
        /* Drop the bytes of a character cut short (each was copied as one byte). */
        while (i > 0 && o > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) {
            i--;
            o--;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int params_json_names(const char *s, size_t len, size_t *members, struct chat_fail *f)
{
    struct json_name *names = NULL, *dup = NULL;
    size_t n = 0, cap = 0, used = 0, i;
    char *buf;
    int err = 0;

    *members = 0;
    i = skip_ws(s, len, 0);
    if (i >= len || s[i] != '{')
        return chat_fail(f, CHAT_EBADREQ, "JSON must be an object");
    if (!(buf = malloc(len)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    for (i++; i < len; ) {
        i = skip_ws(s, len, i);
        if (i >= len || s[i] == '}')
            break;
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] != '"' && s[i] != '\'') {
            err = chat_fail(f, CHAT_EBADREQ, "not valid JSON: a quoted member name is expected");
            goto out;
        }
        if (n == cap) {
            struct json_name *grown;
            cap = cap ? cap * 2 : 8;
            if (!(grown = realloc(names, cap * sizeof *names))) {
                err = chat_fail(f, CHAT_EUNAVAIL, "out of memory");
                goto out;
            }
            names = grown;
        }
        names[n].s = buf + used;
        names[n].pos = n;
        i = decode_string(s, len, i, buf + used, &names[n].len);
        used += names[n].len;
        n++;
        i = skip_ws(s, len, i);
        if (i < len && s[i] == ':')
            i++;
        i = skip_value(s, len, i);
    }
    *members = n;
    for (size_t k = 0; k < n; k++) {
        if (memchr(names[k].s, '\0', names[k].len)) {
            /* json-c cuts a name at its first NUL, so it could not tell "a\u0000b" from "a". */
            err = chat_fail(f, CHAT_EBADREQ, "a JSON key must not contain \\u0000");
            goto out;
        }
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    /* In a run of equal names the second is the first repeat; report the earliest. */
    for (size_t k = 1; k < n; k++) {
        if (names[k].len == names[k - 1].len &&
            (names[k].len == 0 || memcmp(names[k].s, names[k - 1].s, names[k].len) == 0) &&
            (!dup || names[k].pos < dup->pos))
            dup = &names[k];
    }
    if (dup) {
        int key = key_find(dup->s, dup->len);
        char shown[48];
        if (key >= 0) {
            err = chat_fail(f, CHAT_EBADREQ, "parameter %s is given more than once", key_names[key]);
        } else {
            name_for_msg(dup->s, dup->len, shown, sizeof shown);
            err = chat_fail(f, CHAT_EBADREQ, "JSON key \"%s\" is given more than once "
                            "(no key may repeat, even one that is ignored)", shown);
        }
    }
out:
    free(names);
    free(buf);
    return err;
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
    if ((err = params_json_names(s, len, &members, f)) < 0)
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

int params_get(const struct params *p, struct get_args *g, struct chat_fail *f)
{
    int64_t index = 0, limit = CHAT_LIMIT_DEFAULT, tail = 0, wait = 0;
    const struct params_val *w = &p->v[P_WAIT];

    if (int_param(p, P_INDEX, 0, INT64_MAX / 2, &index, f) < 0 ||
        int_param(p, P_LIMIT, 1, CHAT_LIMIT_MAX, &limit, f) < 0 ||
        int_param(p, P_TAIL, 1, CHAT_TAIL_MAX, &tail, f) < 0)
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
    g->room = p->v[P_ROOM].s ? p->v[P_ROOM].s : CHAT_DEFAULT_ROOM;
    g->room_len = p->v[P_ROOM].s ? p->v[P_ROOM].len : strlen(CHAT_DEFAULT_ROOM);
    if (!valid_name(g->room, g->room_len))
        return chat_fail(f, CHAT_EBADREQ, "room must match [A-Za-z0-9_.-]{1,%d}", CHAT_NAME_MAX);
    g->index = index;
    g->limit = (int)limit;
    g->tail = (int)tail;
    g->wait = (int)wait;
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
