/*
 * fuzz_json.c - libFuzzer target: the JSON body reader of POST /send/msg,
 * then the send rules on what it read.
 */
#include <stddef.h>
#include <stdint.h>

#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct params p;
    struct chat_fail f;
    struct valid_send m;

    params_init(&p);
    if (params_add_json(&p, (const char *)data, size, PARAMS_SEND_KEYS, &f) == 0)
        params_send(&p, &m, &f);
    params_free(&p);
    return 0;
}
