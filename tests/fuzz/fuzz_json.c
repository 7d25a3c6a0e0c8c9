/*
 * fuzz_json.c - libFuzzer target: the JSON body reader of POST /send/msg
 * (json-c, then the scan of top-level names for a repeated key), then the
 * send rules on what it read.
 *
 * Besides crashes, leaks and sanitizer reports it checks the scan against
 * json-c, which keeps one member per distinct name: on every object json-c
 * accepts, the scan must find a repeated name exactly when json-c kept
 * fewer members than the scan read (a name with \u0000 aside, which json-c
 * cuts short and the scan refuses). The scan also runs on every input,
 * JSON or not, to show it stays inside what it is given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "json_names.h"
#include "params.h"

/* A check that failed: says which and what each reader said, then stops the fuzzer. */
static void fail(const char *what, int scan, size_t members, size_t kept, const char *msg)
{
    fprintf(stderr, "fuzz_json check failed: %s (scan %d, %zu members, json-c kept %zu; said: %s)\n",
            what, scan, members, kept, msg);
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct params p;
    struct chat_fail f = { 0 }, g = { 0 };
    struct valid_send m;
    size_t members;
    int err, scan;

    /* Its own copy, so that a read one byte past the input is caught. */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    scan = json_names_check(s, size, &members, NULL, &g);

    params_init(&p);
    err = params_add_json(&p, s, size, PARAMS_SEND_KEYS, &f);
    if (err == 0)
        params_send(&p, &m, &f);
    if (p.json && json_object_is_type(p.json, json_type_object)) {
        size_t kept = (size_t)json_object_object_length(p.json);
        if (scan == 0 && members != kept)
            fail("json-c merged names the scan took for different", scan, members, kept, g.msg);
        if (scan == CHAT_EBADREQ && !strstr(g.msg, "\\u0000") &&
            (!strstr(g.msg, "more than once") || members <= kept))
            fail("the scan saw a repeat, or a fault, json-c did not", scan, members, kept, g.msg);
        if (scan == 0 && err == CHAT_EBADREQ && strstr(f.msg, "more than once"))
            fail("a repeat refused that the scan did not see", scan, members, kept, f.msg);
    }
    params_free(&p);
    free(s);
    return 0;
}
