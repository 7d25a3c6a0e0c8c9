/*
 * render.c - JSON answers, built with json-c (the answer to a send, the
 * hottest, is put together by hand).
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
    for (size_t i = 0; i < len; ) {
        /* Each ill-formed byte becomes U+FFFD. */
        size_t n = valid_utf8_char(s + i, len - i);
        if (n == 0) {
            memcpy(p, "\xEF\xBF\xBD", 3);
            p += 3;
            i++;
        } else {
            memcpy(p, s + i, n);
            p += n;
            i += n;
        }
    }
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

static struct json_object *message_object(const struct store_msg *m)
{
    struct json_object *o = json_object_new_object();

    if (!o)
        return NULL;
    json_object_object_add(o, "id", json_object_new_int64(m->id));
    json_object_object_add(o, "room", json_text(m->room, m->room_len));
    json_object_object_add(o, "user", json_text(m->user, m->user_len));
    json_object_object_add(o, "text", json_text(m->text, m->text_len));
    json_object_object_add(o, "ts", json_object_new_int64(m->ts));
    return o;
}

char *render_page(const struct store_page *page, size_t *len)
{
    struct json_object *o = json_object_new_object();
    struct json_object *data = json_object_new_array_ext((int)page->n);
    struct json_object *msgs = json_object_new_array_ext((int)page->n);

    if (!o || !data || !msgs) {
        json_object_put(o);
        json_object_put(data);
        json_object_put(msgs);
        return NULL;
    }
    for (size_t i = 0; i < page->n; i++) {
        const struct store_msg *m = &page->msgs[i];
        json_object_array_add(data, json_text(m->text, m->text_len));
        json_object_array_add(msgs, message_object(m));
    }
    json_object_object_add(o, "data", data);
    json_object_object_add(o, "max_index", json_object_new_int64(page->max_index));
    json_object_object_add(o, "messages", msgs);
    json_object_object_add(o, "more", json_object_new_boolean(page->more));
    if (page->pruned)
        json_object_object_add(o, "pruned", json_object_new_boolean(true));
    return finish(o, len);
}

char *render_message(const struct store_msg *m, size_t *len)
{
    return finish(message_object(m), len);
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
    *p = '\0';
    *len = (size_t)(p - out);
    return out;
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
