/*
 * fuzz_query.c - libFuzzer target: the query-string and form decoder, then
 * the rules of /send/msg and /get/msg on what it decoded.
 */
#include <stddef.h>
#include <stdint.h>

#include "params.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct params p;
    struct chat_fail f;
    struct valid_send m;
    struct get_args g;

    params_init(&p);
    if (params_add_urlencoded(&p, (const char *)data, size, &f) == 0) {
        params_send(&p, &m, &f);
        params_get(&p, &g, &f);
    }
    params_free(&p);
    return 0;
}
