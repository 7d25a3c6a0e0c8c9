/*
 * fuzz_ws.c - libFuzzer target: the WebSocket frame handler's reading of a
 * client frame (params_ws_frame), and the rendering of what it accepted as
 * a message and of its refusals.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "params.h"
#include "render.h"

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
    return 0;
}
