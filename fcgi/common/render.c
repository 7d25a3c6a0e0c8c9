/*
 * render.c - JSON answers. The hot ones (a send's answer, a page of
 * messages, one message) are put together by hand; the rest are built
 * with json-c. Both write strings the same way: valid UTF-8 as is, each
 * ill-formed byte as U+FFFD, `"`, `\` and control characters escaped.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "render.h"
#include "util.h"
#include "valid.h"

#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/*
 * Copies the UTF-8 character at s (left bytes on) to p, or U+FFFD when the
 * byte there does not start a well-formed sequence; *used is what it took.
 */
static char *put_char(char *p, const char *s, size_t left, size_t *used)
{
    size_t n = valid_utf8_char(s, left);

    if (n == 0) {
        *used = 1;
        return util_put(p, "\xEF\xBF\xBD", 3);
    }
    *used = n;
    return util_put(p, s, n);
}

/*
 * A JSON string of s[0..len): as is when valid UTF-8, else with each byte
 * that does not start a well-formed sequence replaced by U+FFFD.
 */
static struct json_object *json_text(const char *s, size_t len)
{
    struct json_object *o;
    char *fixed, *p;

    if (valid_utf8(s, len))
        return json_object_new_string_len(s, (int)len);
    if (!(fixed = malloc(len * 3 + 1)))
        return NULL;
    p = fixed;
    for (size_t i = 0, n; i < len; i += n)
        p = put_char(p, s + i, len - i, &n);
    o = json_object_new_string_len(fixed, (int)(p - fixed));
    free(fixed);
    return o;
}

/* Serialises o, then drops it. */
static char *finish(struct json_object *o, size_t *len)
{
    const char *s;
    char *out = NULL;

    if (!o)
        return NULL;
    s = json_object_to_json_string_length(o, JSON_FLAGS, len);
    if (s && (out = malloc(*len + 1)))
        memcpy(out, s, *len + 1);
    json_object_put(o);
    return out;
}

/* Bytes that put_str may write for s[0..len): at most \u00XX for every byte, and the quotes. */
static size_t str_room(size_t len)
{
    return 6 * len + 2;
}

/* Writes s[0..len) at p as a JSON string, as json-c would write json_text(s, len); returns the end. */
static char *put_str(char *p, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    *p++ = '"';
    for (size_t i = 0; i < len; ) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            size_t n;
            p = put_char(p, s + i, len - i, &n);
            i += n;
            continue;
        }
        i++;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *p++ = (char)c;
            continue;
        }
        *p++ = '\\';
        switch (c) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\b': *p++ = 'b'; break;
        case '\f': *p++ = 'f'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default:
            p = util_put_str(p, "u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p++ = '"';
    return p;
}

/* Bytes put_message may write for m. */
static size_t message_room(const struct store_msg *m)
{
    return str_room(m->room_len) + str_room(m->user_len) + str_room(m->text_len) + 100;
}

static char *put_message(char *p, const struct store_msg *m)
{
    p = util_put_str(p, "{\"id\":");
    p = util_put_int(p, m->id);
    p = util_put_str(p, ",\"room\":");
    p = put_str(p, m->room, m->room_len);
    p = util_put_str(p, ",\"user\":");
    p = put_str(p, m->user, m->user_len);
    p = util_put_str(p, ",\"text\":");
    p = put_str(p, m->text, m->text_len);
    p = util_put_str(p, ",\"ts\":");
    p = util_put_int(p, m->ts);
    *p++ = '}';
    return p;
}

/* The end of an answer written at out..p: NUL-terminated, its length in *len. */
static char *done(char *out, char *p, size_t *len)
{
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
}

char *render_page(const struct store_page *page, size_t *len)
{
    size_t room = 100;
    char *out, *p;

    for (size_t i = 0; i < page->n; i++)
        room += str_room(page->msgs[i].text_len) + 1 + message_room(&page->msgs[i]) + 1;
    if (!(out = p = malloc(room)))
        return NULL;
    p = util_put_str(p, "{\"data\":[");
    for (size_t i = 0; i < page->n; i++) {
        if (i > 0)
            *p++ = ',';
        p = put_str(p, page->msgs[i].text, page->msgs[i].text_len);
    }
    p = util_put_str(p, "],\"max_index\":");
    p = util_put_int(p, page->max_index);
    p = util_put_str(p, ",\"messages\":[");
    for (size_t i = 0; i < page->n; i++) {
        if (i > 0)
            *p++ = ',';
        p = put_message(p, &page->msgs[i]);
    }
    p = util_put_str(p, page->more ? "],\"more\":true" : "],\"more\":false");
    if (page->pruned)
        p = util_put_str(p, ",\"pruned\":true");
    *p++ = '}';
    return done(out, p, len);
}

char *render_message(const struct store_msg *m, size_t *len)
{
    char *out = malloc(message_room(m) + 1);

    return out ? done(out, put_message(out, m), len) : NULL;
}

char *render_sent(const struct store_sent *sent, const char *room, size_t room_len, size_t *len)
{
    /* Put together, not built: the answer to every send; a room name needs no escaping. */
    char *out = malloc(room_len + 100), *p = out;

    if (!out)
        return NULL;
    p = util_put_str(p, "{\"ok\":true,\"id\":");
    p = util_put_int(p, sent->id);
    p = util_put_str(p, ",\"room\":\"");
    p = util_put(p, room, room_len);
    p = util_put_str(p, "\",\"ts\":");
    p = util_put_int(p, sent->ts);
    if (sent->duplicate)
        p = util_put_str(p, ",\"duplicate\":true");
    *p++ = '}';
    return done(out, p, len);
}

char *render_health(size_t held, int64_t probes, size_t *len)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "ok", json_object_new_boolean(true));
    json_object_object_add(o, "held", json_object_new_int64((int64_t)held));
    json_object_object_add(o, "probes", json_object_new_int64(probes));
    return finish(o, len);
}

char *render_sse_ready(const char *room, size_t room_len, int64_t max_index, bool pruned,
                       size_t *len)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "room", json_text(room, room_len));
    json_object_object_add(o, "max_index", json_object_new_int64(max_index));
    if (pruned)
        json_object_object_add(o, "pruned", json_object_new_boolean(true));
    return finish(o, len);
}

char *render_error(const char *msg, size_t *len)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "error", json_text(msg, strlen(msg)));
    return finish(o, len);
}

char *render_ws_error(const char *msg, int code, size_t *len)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "error", json_text(msg, strlen(msg)));
    json_object_object_add(o, "code", json_object_new_int(code));
    return finish(o, len);
}

char *render_ws_duplicate(int64_t id, size_t *len)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "duplicate", json_object_new_boolean(true));
    json_object_object_add(o, "id", json_object_new_int64(id));
    return finish(o, len);
}
