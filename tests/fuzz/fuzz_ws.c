/*
 * fuzz_ws.c - libFuzzer target: the WebSocket frame handler's reading of a
 * client frame (params_ws_frame), and the rendering of what it accepted as
 * a message and of its refusals. The input is also rendered as a message's
 * text, by hand (render.c): it must be the bytes json-c writes for it when
 * it is valid UTF-8, and parse as JSON when it is not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "params.h"
#include "render.h"
#include "valid.h"

/* The input as the text of a message, rendered by hand, checked against json-c. */
static void check_text(const char *text, size_t size)
{
    struct store_msg sm = { .id = 7, .ts = 9, .room = "r", .room_len = 1, .user = "u", .user_len = 1,
                            .text = text, .text_len = size };
    size_t len;
    char *out = render_message(&sm, &len);
    struct json_object *o;

    if (!out)
        return;
    if (strlen(out) != len)
        abort();
    if (valid_utf8(text, size)) {
        size_t want_len;
        const char *want;
        o = json_object_new_object();
        json_object_object_add(o, "id", json_object_new_int64(7));
        json_object_object_add(o, "room", json_object_new_string("r"));
        json_object_object_add(o, "user", json_object_new_string("u"));
        json_object_object_add(o, "text", json_object_new_string_len(text, (int)size));
        json_object_object_add(o, "ts", json_object_new_int64(9));
        want = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
                                                 &want_len);
        if (want_len != len || memcmp(want, out, len) != 0)
            abort();
    } else if (!(o = json_tokener_parse(out))) {
        abort();
    }
    json_object_put(o);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct params p;
    struct chat_fail f = { 0 };
    struct valid_send m;
    size_t len;
    char *out;

    params_init(&p);
    if (params_ws_frame(&p, (const char *)data, size, "lobby", 5, &m, &f) == 0) {
        struct store_msg sm = { .id = 1, .ts = 1, .room = m.room, .room_len = m.room_len,
                                .user = m.user, .user_len = m.user_len,
                                .text = m.text, .text_len = m.text_len };
        out = render_message(&sm, &len);
    } else {
        out = render_ws_error(f.msg, chat_err_status(f.code), &len);
    }
    free(out);
    params_free(&p);
    check_text((const char *)data, size);
    return 0;
}
