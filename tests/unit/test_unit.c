/*
 * test_unit.c - cmocka tests of the pure modules (valid, params, render)
 * and of the store on a temporary database file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "chat_limits.h"
#include "json_names.h"
#include "metrics.h"
#include "notify.h"
#include "params.h"
#include "render.h"
#include "retain.h"
#include "store.h"
#include "util.h"
#include "valid.h"

/* ---- valid.c ---- */

static void test_utf8(void **state)
{
    (void)state;
    assert_true(valid_utf8("", 0));
    assert_true(valid_utf8("h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", 15));
    assert_false(valid_utf8("\xC0\xAF", 2));             /* overlong '/' */
    assert_false(valid_utf8("\xED\xA0\x80", 3));         /* surrogate */
    assert_false(valid_utf8("\xF4\x90\x80\x80", 4));     /* above U+10FFFF */
    assert_false(valid_utf8("\xE2\x82", 2));             /* truncated */
    assert_false(valid_utf8("\x80", 1));                 /* lone continuation */
}

static void test_chars(void **state)
{
    struct chat_fail f;
    (void)state;
    assert_int_equal(valid_chars("text", "a\tb\nc", 5, &f), 0);
    assert_int_equal(valid_chars("text", "a\rb", 3, &f), CHAT_EBADREQ);
    assert_int_equal(valid_chars("text", "a\0b", 3, &f), CHAT_EBADREQ);
    assert_non_null(strstr(f.msg, "NUL"));
    assert_int_equal(valid_chars("text", "\x7F", 1, &f), CHAT_EBADREQ);
    assert_int_equal(valid_chars("text", "\xC2\x85", 2, &f), CHAT_EBADREQ);  /* C1 NEL */
    assert_int_equal(valid_chars("user", "\xFF", 1, &f), CHAT_EBADREQ);
    assert_non_null(strstr(f.msg, "UTF-8"));
}

static void test_names(void **state)
{
    char long_name[CHAT_NAME_MAX + 2];
    (void)state;
    assert_true(valid_name("lobby", 5));
    assert_true(valid_name("A-z_0.9", 7));
    assert_false(valid_name("", 0));
    assert_false(valid_name("a b", 3));
    assert_false(valid_name("a/b", 3));
    memset(long_name, 'x', sizeof long_name);
    assert_true(valid_name(long_name, CHAT_NAME_MAX));
    assert_false(valid_name(long_name, CHAT_NAME_MAX + 1));
}

static void test_send_rules(void **state)
{
    static char big[CHAT_TEXT_MAX + 1];
    struct valid_send m = { .text = "hi", .text_len = 2, .user = "", .room = "lobby", .room_len = 5 };
    struct chat_fail f;
    (void)state;
    assert_int_equal(valid_send(&m, &f), 0);
    memset(big, 'a', sizeof big);
    m.text = big;
    m.text_len = CHAT_TEXT_MAX;
    assert_int_equal(valid_send(&m, &f), 0);
    m.text_len = CHAT_TEXT_MAX + 1;
    assert_int_equal(valid_send(&m, &f), CHAT_ETOOBIG);
    m.text_len = 0;
    assert_int_equal(valid_send(&m, &f), CHAT_EBADREQ);
    m.text = NULL;
    assert_int_equal(valid_send(&m, &f), CHAT_EBADREQ);
    assert_non_null(strstr(f.msg, "required"));
    m.text = "hi"; m.text_len = 2;
    m.user = big; m.user_len = CHAT_USER_MAX + 1;
    assert_int_equal(valid_send(&m, &f), CHAT_EBADREQ);
    m.user = "ann"; m.user_len = 3;
    m.cid = "bad cid"; m.cid_len = 7;
    assert_int_equal(valid_send(&m, &f), CHAT_EBADREQ);
}

/* ---- params.c ---- */

static void test_urlencoded(void **state)
{
    struct params p;
    struct chat_fail f;
    const char *q = "text=a+b%20c%0Ad&user=%C3%A9&other=1&room=r";
    (void)state;
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, q, strlen(q), &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 7);
    assert_memory_equal(p.v[P_TEXT].s, "a b c\nd", 7);
    assert_memory_equal(p.v[P_USER].s, "\xC3\xA9", 2);
    assert_memory_equal(p.v[P_ROOM].s, "r", 1);
    assert_null(p.v[P_CID].s);
    params_free(&p);
}

static void test_urlencoded_errors(void **state)
{
    struct params p;
    struct chat_fail f;
    const char *twice = "text=a&text=b", *bad = "text=%zz", *cut = "text=ab%4";
    const char *empty = "text=&user", *nul = "text=a%00b";
    (void)state;
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, twice, strlen(twice), &f), CHAT_EBADREQ);
    assert_non_null(strstr(f.msg, "more than once"));
    params_free(&p);
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, bad, strlen(bad), &f), CHAT_EBADREQ);
    params_free(&p);
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, cut, strlen(cut), &f), CHAT_EBADREQ);
    params_free(&p);
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, empty, strlen(empty), &f), 0);
    assert_non_null(p.v[P_TEXT].s);
    assert_int_equal(p.v[P_TEXT].len, 0);
    assert_int_equal(p.v[P_USER].len, 0);
    params_free(&p);
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, nul, strlen(nul), &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 3);
    params_free(&p);
}

static void test_query_and_body_clash(void **state)
{
    struct params p;
    struct chat_fail f;
    (void)state;
    params_init(&p);
    assert_int_equal(params_reserve(&p, 20), 0);
    assert_int_equal(params_add_urlencoded(&p, "room=a", 6, &f), 0);
    assert_int_equal(params_add_urlencoded(&p, "room=b", 6, &f), CHAT_EBADREQ);
    params_free(&p);
}

static void test_json(void **state)
{
    struct params p;
    struct chat_fail f;
    const char *ok = "{\"text\":\"hi\\u00e9\",\"user\":\"ann\",\"extra\":[1,2],\"n\":3}";
    (void)state;
    params_init(&p);
    assert_int_equal(params_add_json(&p, ok, strlen(ok), PARAMS_SEND_KEYS, &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 4);
    assert_memory_equal(p.v[P_TEXT].s, "hi\xC3\xA9", 4);
    params_free(&p);

    static const char *const bad[] = {
        "{\"text\":1}", "{\"text\":null}", "[\"text\"]", "\"text\"", "{\"text\":\"a\"",
        "{\"text\":\"a\"} x", "{text:\"a\"}", "", "{\"text\":\"\xff\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        params_init(&p);
        assert_int_equal(params_add_json(&p, bad[i], strlen(bad[i]), PARAMS_SEND_KEYS, &f), CHAT_EBADREQ);
        params_free(&p);
    }
    params_init(&p);
    /* Keys outside the set are ignored, whatever their type. */
    const char *other = "{\"text\":\"a\",\"limit\":5,\"room\":[1]}";
    assert_int_equal(params_add_json(&p, other, strlen(other), PARAMS_KEY(P_TEXT), &f), 0);
    assert_null(p.v[P_ROOM].s);
    params_free(&p);
    params_init(&p);
    assert_int_equal(params_add_json(&p, "{\"text\":\"a\\u0000b\"}", 19, PARAMS_SEND_KEYS, &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 3);
    params_free(&p);
}

/* One JSON body through params_add_json(): its status, and f.msg in *msg. */
static int json_status(const char *body, size_t len, char *msg, size_t msg_size)
{
    struct params p;
    struct chat_fail f = { 0 };
    int err;

    params_init(&p);
    err = params_add_json(&p, body, len, PARAMS_SEND_KEYS, &f);
    snprintf(msg, msg_size, "%s", err ? f.msg : "");
    params_free(&p);
    return err;
}
#define JSON_STATUS(body, msg) json_status(body, sizeof(body) - 1, msg, sizeof msg)

static void test_json_duplicates(void **state)
{
    struct params p;
    struct chat_fail f;
    struct valid_send m;
    char msg[sizeof f.msg];
    size_t members;
    (void)state;

    /* The same key twice at the top level: 400 naming it, as the query string's error. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"text\":\"b\"}", msg), CHAT_EBADREQ);
    assert_string_equal(msg, "parameter text is given more than once");
    /* Compared after unescaping: \u0078 is x, \/ is /, \" is a quote. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"te\\u0078t\":\"b\"}", msg), CHAT_EBADREQ);
    assert_string_equal(msg, "parameter text is given more than once");
    assert_int_equal(JSON_STATUS("{\"\\u0074\\u0065\\u0078\\u0074\":\"a\",\"user\":\"u\",\"text\":\"b\"}", msg),
                     CHAT_EBADREQ);
    assert_non_null(strstr(msg, "text"));
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"a\\/b\":1,\"a/b\":2}", msg), CHAT_EBADREQ);
    assert_string_equal(msg, "JSON key \"a/b\" is given more than once "
                        "(no key may repeat, even one that is ignored)");
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\\"q\\n\":1,\"\\u0022q\\u000a\":2}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "JSON key \"\\\"q\\u000a\" is given more than once"));
    /* Surrogate pairs, either case, and the raw UTF-8 of the same character. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\ud83d\\ude00\":1,\"\xF0\x9F\x98\x80\":2}", msg),
                     CHAT_EBADREQ);
    assert_non_null(strstr(msg, "\"\xF0\x9F\x98\x80\""));
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\uD83D\\uDE00\":1,\"\\ud83d\\ude00\":2}", msg), CHAT_EBADREQ);
    assert_int_equal(JSON_STATUS("{\"\\u00e9\":1,\"\xC3\xA9\":2,\"text\":\"a\"}", msg), CHAT_EBADREQ);
    /* Lone surrogates: json-c reads each as U+FFFD, so these two are one name to it. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\ud800\":1,\"\\udc00\":2}", msg), CHAT_EBADREQ);
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\ud800\\u0041\":1,\"\xEF\xBF\xBD" "A\":2}", msg),
                     CHAT_EBADREQ);
    /* A pair split by anything is not a pair. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\\ud83d \\ude00\":1,\"\xF0\x9F\x98\x80\":2}", msg), 0);
    /* Any key, even one that is ignored, the empty key too, and single-quoted names (json-c takes them). */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"zz\":1,\"other\":{},\"zz\":[2]}", msg), CHAT_EBADREQ);
    assert_string_equal(msg, "JSON key \"zz\" is given more than once "
                        "(no key may repeat, even one that is ignored)");
    assert_int_equal(JSON_STATUS("{\"\":1,\"text\":\"a\",\"\":2}", msg), CHAT_EBADREQ);
    assert_int_equal(JSON_STATUS("{'text':\"a\",\"text\":\"b\"}", msg), CHAT_EBADREQ);
    assert_string_equal(msg, "parameter text is given more than once");
    /* The earliest repeat is the one named. */
    assert_int_equal(JSON_STATUS("{\"b\":1,\"a\":1,\"text\":\"x\",\"a\":2,\"b\":2}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "\"a\""));
    /* A long name is shown cut, at a character boundary. */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
                                 "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
                                 "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\":1,"
                                 "\"\\u00e9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
                                 "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
                                 "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\":2}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "\xC3\xA9...\" is given"));
    assert_true(valid_utf8(msg, strlen(msg)));
    /* A key holding \u0000: json-c would read it as "text". */
    assert_int_equal(JSON_STATUS("{\"text\":\"a\",\"text\\u0000x\":\"b\"}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "\\u0000"));

    /* Keys inside nested values do not count; nor do keys inside strings. */
    static const char nested[] = "{\"x\":{\"text\":\"b\",\"text\":\"c\",\"y\":{\"z\":1,\"z\":2}},"
                                 "\"l\":[{\"user\":1,\"user\":2},[\"text\",\"text\"]],\"text\":\"a\"}";
    params_init(&p);
    assert_int_equal(params_add_json(&p, nested, sizeof nested - 1, PARAMS_SEND_KEYS, &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 1);
    assert_memory_equal(p.v[P_TEXT].s, "a", 1);
    params_free(&p);
    static const char in_strings[] = "{\"text\":\"{\\\"text\\\":\\\"b\\\"},\\\"text\\\":\","
                                     "\"user\":\"}\\\"text\\\\\",\"x\":\"\\\\\",\"y\":\"'\",\"cid\":\"c-1\"}";
    params_init(&p);
    assert_int_equal(params_add_json(&p, in_strings, sizeof in_strings - 1, PARAMS_SEND_KEYS, &f), 0);
    assert_int_equal(p.v[P_TEXT].len, 20);
    assert_memory_equal(p.v[P_TEXT].s, "{\"text\":\"b\"},\"text\":", 20);
    assert_memory_equal(p.v[P_CID].s, "c-1", 3);
    params_free(&p);
    /* A single-quoted name may hold a double quote and a brace. */
    assert_int_equal(JSON_STATUS("{'a\"}':1,\"text\":\"a\",\"a\\\"}\":2}", msg), CHAT_EBADREQ);
    assert_int_equal(JSON_STATUS("{'a\"}':1,\"text\":\"a\"}", msg), 0);

    /* The scan counts the top-level members only. */
    static const char counted[] = " {\"a\" : 1 ,\n\"b\":{\"c\":[1,{\"d\":\"}\"}]},\"e\":-0.5e3,\"f\":null}\n";
    assert_int_equal(json_names_check(counted, sizeof counted - 1, &members, NULL, &f), 0);
    assert_int_equal(members, 4);
    assert_int_equal(json_names_check("{}", 2, &members, NULL, &f), 0);
    assert_int_equal(members, 0);
    /* On anything else it ends, reading nothing outside what it is given. */
    static const char *const junk[] = { "", "{", "{\"", "{\"\\", "{\"\\u12", "{\"a\":\"", "{\"a\":{[",
                                        "{\"\\ud83d\\ude0", "[1]", "{1:2}", "{\"a\"\"b\"", "{,,,}" };
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        json_names_check(junk[i], strlen(junk[i]), &members, NULL, &f);

    /* A WebSocket frame goes through the same check. */
    static const char frame[] = "{\"text\":\"a\",\"te\\u0078t\":\"b\"}";
    params_init(&p);
    assert_int_equal(params_ws_frame(&p, frame, sizeof frame - 1, "lobby", 5, &m, &f), CHAT_EBADREQ);
    assert_string_equal(f.msg, "parameter text is given more than once");
    params_free(&p);
}

static void test_get_args(void **state)
{
    struct params p;
    struct get_args g;
    struct chat_fail f;
    const char *q = "index=42&limit=1000&wait=999999999999999999999&room=x";
    (void)state;
    params_init(&p);
    assert_int_equal(params_add_urlencoded(&p, q, strlen(q), &f), 0);
    assert_int_equal(params_get(&p, &g, &f), 0);
    assert_int_equal(g.index, 42);
    assert_int_equal(g.limit, 1000);
    assert_int_equal(g.wait, CHAT_WAIT_MAX);
    assert_int_equal(g.tail, 0);
    params_free(&p);

    params_init(&p);
    assert_int_equal(params_get(&p, &g, &f), 0);
    assert_int_equal(g.index, 0);
    assert_int_equal(g.limit, CHAT_LIMIT_DEFAULT);
    assert_memory_equal(g.room, "lobby", 5);
    params_free(&p);

    /* The whole cursor range (SPEC section 3), leading zeros allowed. */
    static const struct { const char *q; int64_t index; int wait; } good[] = {
        { "index=4611686018427387903", INT64_MAX / 2, 0 },
        { "index=0000000000000000000001", 1, 0 },
        { "index=000&wait=0000000000000000000000005", 0, 5 },
        { "index=0&wait=00000000000000000000000061", 0, CHAT_WAIT_MAX },
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        params_init(&p);
        assert_int_equal(params_add_urlencoded(&p, good[i].q, strlen(good[i].q), &f), 0);
        assert_int_equal(params_get(&p, &g, &f), 0);
        assert_true(g.index == good[i].index);
        assert_int_equal(g.wait, good[i].wait);
        params_free(&p);
    }

    static const char *const bad[] = {
        "index=4611686018427387904", "index=9223372036854775808", "index=99999999999999999999",
        "index=+1", "index=-1", "index=1.5", "index=abc", "index=", "limit=0", "limit=1001",
        "tail=0", "tail=1001", "wait=-1", "wait=1.5", "wait=", "room=a%20b", "room=",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        params_init(&p);
        assert_int_equal(params_add_urlencoded(&p, bad[i], strlen(bad[i]), &f), 0);
        assert_int_equal(params_get(&p, &g, &f), CHAT_EBADREQ);
        params_free(&p);
    }
}

/* ---- render.c ---- */

/* A row written by hand with invalid UTF-8 is served with U+FFFD for each bad byte. */
static void test_render_repairs_utf8(void **state)
{
    static const char bad[] = "a\xff" "b\xe2\x82" "\xc3\xa9";
    struct store_msg m = { .id = 1, .ts = 2, .room = "r", .room_len = 1, .user = "", .user_len = 0,
                           .text = bad, .text_len = sizeof bad - 1 };
    size_t len;
    char *json = render_message(&m, &len);

    (void)state;
    assert_non_null(json);
    assert_non_null(strstr(json, "\"text\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\xc3\xa9\""));
    free(json);
}

static void test_render_page(void **state)
{
    struct store_msg msgs[2] = {
        { .id = 41, .ts = 1000, .room = "lobby", .room_len = 5, .user = "ann", .user_len = 3,
          .text = "hello \"x\" </script>", .text_len = 19 },
        { .id = 42, .ts = 1001, .room = "lobby", .room_len = 5, .user = "", .user_len = 0,
          .text = "bad\xFF\xC3", .text_len = 5 },
    };
    struct store_page page = { .msgs = msgs, .n = 2, .max_index = 42 };
    size_t len;
    char *s = render_page(&page, &len);
    (void)state;
    assert_non_null(s);
    assert_int_equal(strlen(s), len);
    assert_string_equal(s,
        "{\"data\":[\"hello \\\"x\\\" </script>\",\"bad\xEF\xBF\xBD\xEF\xBF\xBD\"],\"max_index\":42,"
        "\"messages\":[{\"id\":41,\"room\":\"lobby\",\"user\":\"ann\",\"text\":\"hello \\\"x\\\" </script>\",\"ts\":1000},"
        "{\"id\":42,\"room\":\"lobby\",\"user\":\"\",\"text\":\"bad\xEF\xBF\xBD\xEF\xBF\xBD\",\"ts\":1001}],"
        "\"more\":false}");
    free(s);
}

static void test_util_put(void **state)
{
    char buf[64], *p = buf;
    (void)state;
    p = util_put_int(p, 0);
    *p++ = ' ';
    p = util_put_int(p, -42);
    *p++ = ' ';
    p = util_put_int(p, INT64_MAX);
    *p++ = ' ';
    p = util_put_int(p, INT64_MIN);
    p = util_put_str(p, " ok");
    *p = '\0';
    assert_string_equal(buf, "0 -42 9223372036854775807 -9223372036854775808 ok");
}

static void test_util_parse_int(void **state)
{
    int64_t v = -7;
    char zeros[1001];
    (void)state;

    /* The documented maximum cursor (2^62 - 1, 19 digits) and one past it. */
    assert_true(util_parse_int("4611686018427387903", 19, 0, INT64_MAX / 2, &v));
    assert_true(v == INT64_MAX / 2);
    v = -7;
    assert_false(util_parse_int("4611686018427387904", 19, 0, INT64_MAX / 2, &v));
    assert_int_equal(v, -7);
    /* int64 itself, and past it by value, whatever the digit count. */
    assert_true(util_parse_int("9223372036854775807", 19, 0, INT64_MAX, &v));
    assert_true(v == INT64_MAX);
    v = -7;
    assert_false(util_parse_int("9223372036854775808", 19, 0, INT64_MAX, &v));
    assert_false(util_parse_int("18446744073709551616", 20, 0, INT64_MAX, &v));
    assert_false(util_parse_int("99999999999999999999", 20, 0, INT64_MAX, &v));
    assert_false(util_parse_int("92233720368547758070", 20, 0, INT64_MAX, &v));
    assert_int_equal(v, -7);
    /* Leading zeros, any number of them. */
    assert_true(util_parse_int("00000000000000000001", 20, 0, INT64_MAX / 2, &v));
    assert_int_equal(v, 1);
    assert_true(util_parse_int("0000000000000000000001", 22, 0, INT64_MAX / 2, &v));
    assert_int_equal(v, 1);
    assert_true(util_parse_int("00004611686018427387903", 23, 0, INT64_MAX / 2, &v));
    assert_true(v == INT64_MAX / 2);
    memset(zeros, '0', sizeof zeros - 1);
    zeros[sizeof zeros - 2] = '7';
    assert_true(util_parse_int(zeros, sizeof zeros - 1, 0, 10, &v));
    assert_int_equal(v, 7);
    assert_true(util_parse_int("0", 1, 0, 0, &v));
    assert_int_equal(v, 0);
    /* Bounds both ways; only s[0..len) is read. */
    assert_false(util_parse_int("0", 1, 1, 10, &v));
    assert_false(util_parse_int("11", 2, 1, 10, &v));
    assert_true(util_parse_int("10x", 2, 1, 10, &v));
    assert_int_equal(v, 10);
    /* Digits only: no empty, no sign, no space, nothing after. */
    v = -7;
    static const char *const bad[] = { "", "-", "+", "-1", "+1", " 1", "1 ", "1a", "0x1", "1.0", "1e3",
                                       "99999999999999999999x", "00000000000000000000-" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(util_parse_int(bad[i], strlen(bad[i]), INT64_MIN, INT64_MAX, &v));
    assert_int_equal(v, -7);
    assert_false(util_parse_int(NULL, 0, 0, 10, &v));
}

static void test_render_sent_and_error(void **state)
{
    struct store_sent sent = { .id = 7, .ts = 99, .duplicate = true };
    size_t len;
    char *s = render_sent(&sent, "r1", 2, &len);
    (void)state;
    assert_string_equal(s, "{\"ok\":true,\"id\":7,\"room\":\"r1\",\"ts\":99,\"duplicate\":true}");
    free(s);
    s = render_error("text is \"bad\"\n", &len);
    assert_string_equal(s, "{\"error\":\"text is \\\"bad\\\"\\n\"}");
    free(s);
}

/* The data of an event stream's ready event; never a raw newline (an event's data is one line). */
static void test_render_sse_ready(void **state)
{
    size_t len;
    char *s = render_sse_ready("lobby", 5, 41, false, &len);
    (void)state;
    assert_string_equal(s, "{\"room\":\"lobby\",\"max_index\":41}");
    assert_int_equal(len, strlen(s));
    free(s);
    s = render_sse_ready("dev", 3, 0, true, &len);
    assert_string_equal(s, "{\"room\":\"dev\",\"max_index\":0,\"pruned\":true}");
    free(s);
    s = render_ws_error("line one\nline two\r", 503, &len);
    assert_null(strchr(s, '\n'));
    assert_null(strchr(s, '\r'));
    free(s);
}

/* ---- store.c ---- */

struct db { char path[64]; struct store *s; };

static int db_setup(void **state)
{
    struct db *d = calloc(1, sizeof *d);
    struct chat_fail f;
    int fd;
    snprintf(d->path, sizeof d->path, "/tmp/chat-unit-XXXXXX");
    fd = mkstemp(d->path);
    close(fd);
    unlink(d->path);
    struct store_opts o = { .path = d->path, .busy_ms = 1000 };
    if (store_open(&o, &d->s, &f) < 0) {
        fprintf(stderr, "store_open: %s\n", f.msg);
        return -1;
    }
    *state = d;
    return 0;
}

static int db_teardown(void **state)
{
    struct db *d = *state;
    char p[80];
    store_close(d->s);
    unlink(d->path);
    snprintf(p, sizeof p, "%s-wal", d->path); unlink(p);
    snprintf(p, sizeof p, "%s-shm", d->path); unlink(p);
    free(d);
    return 0;
}

static void send_one(struct store *s, const char *room, const char *text, const char *cid,
                     struct store_sent *out)
{
    struct valid_send m = { .text = text, .text_len = strlen(text), .user = "u", .user_len = 1,
                            .room = room, .room_len = strlen(room),
                            .cid = cid, .cid_len = cid ? strlen(cid) : 0 };
    struct store_item item = { .msg = &m }, *one = &item;
    assert_int_equal(store_append_batch(s, &one, 1), 0);
    assert_int_equal(item.err, 0);
    *out = item.sent;
}

static void test_store_append_fetch(void **state)
{
    struct db *d = *state;
    struct store_sent a, b, c, dup;
    struct store_page page;
    struct chat_fail f;
    int64_t max_id;

    send_one(d->s, "lobby", "one", NULL, &a);
    send_one(d->s, "other", "two", NULL, &b);
    send_one(d->s, "lobby", "three", "c1", &c);
    send_one(d->s, "lobby", "three again", "c1", &dup);
    assert_true(a.id < b.id && b.id < c.id);
    assert_false(c.duplicate);
    assert_true(dup.duplicate);
    assert_int_equal(dup.id, c.id);
    assert_true(a.ts > 1700000000000LL);

    assert_int_equal(store_fetch(d->s, "lobby", 5, 0, 100, 0, &page, &f), 0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.msgs[0].text, "one");
    assert_string_equal(page.msgs[1].text, "three");
    assert_int_equal(page.max_index, c.id);
    assert_false(page.more);
    store_page_free(&page);

    assert_int_equal(store_fetch(d->s, "lobby", 5, 0, 1, 0, &page, &f), 0);
    assert_int_equal(page.n, 1);
    assert_true(page.more);
    assert_int_equal(page.max_index, a.id);
    store_page_free(&page);

    assert_int_equal(store_fetch(d->s, "lobby", 5, c.id, 100, 0, &page, &f), 0);
    assert_int_equal(page.n, 0);
    assert_int_equal(page.max_index, c.id);
    assert_int_equal(page.seen_id, c.id);
    store_page_free(&page);

    assert_int_equal(store_fetch(d->s, "lobby", 5, 0, 100, 1, &page, &f), 0);
    assert_int_equal(page.n, 1);
    assert_string_equal(page.msgs[0].text, "three");
    store_page_free(&page);

    assert_int_equal(store_fetch(d->s, "empty", 5, 0, 100, 0, &page, &f), 0);
    assert_int_equal(page.n, 0);
    assert_int_equal(page.max_index, 0);
    store_page_free(&page);

    assert_int_equal(store_max_id(d->s, &max_id, &f), 0);
    assert_int_equal(max_id, c.id);
    assert_int_equal(store_check(d->s, &f), 0);

    assert_int_equal(store_since(d->s, a.id, 100, &page, &f), 0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.msgs[0].room, "other");
    assert_string_equal(page.msgs[1].room, "lobby");
    assert_int_equal(page.max_index, c.id);
    store_page_free(&page);
    assert_int_equal(store_since(d->s, c.id, 100, &page, &f), 0);
    assert_int_equal(page.n, 0);
    assert_int_equal(page.max_index, c.id);
    store_page_free(&page);
}

/* A batch commits together; a cid repeated inside it finds the first; one
 * message that fails leaves the others stored. */
static void test_store_append_batch(void **state)
{
    struct db *d = *state;
    static const char *const texts[] = { "a", "b", "c", "boom", "e" };
    static const char *const cids[] = { "k1", "k1", NULL, NULL, "k2" };
    struct store_item items[5], *ptrs[5];
    struct valid_send m[5];
    struct store_page page;
    struct chat_fail f;
    sqlite3 *db;

    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TRIGGER refuse BEFORE INSERT ON messages"
                                  " WHEN NEW.text = 'boom' BEGIN SELECT RAISE(ABORT, 'refused'); END",
                                  NULL, NULL, NULL), SQLITE_OK);
    for (int i = 0; i < 5; i++) {
        m[i] = (struct valid_send){ .text = texts[i], .text_len = strlen(texts[i]), .user = "",
                                    .room = "lobby", .room_len = 5,
                                    .cid = cids[i], .cid_len = cids[i] ? 2 : 0 };
        items[i] = (struct store_item){ .msg = &m[i] };
        ptrs[i] = &items[i];
    }
    /* One message failing on its own is refused alone: the batch succeeds. */
    assert_int_equal(store_append_batch(d->s, ptrs, 5), 0);
    assert_int_equal(items[0].err, 0);
    assert_false(items[0].sent.duplicate);
    assert_int_equal(items[1].err, 0);
    assert_true(items[1].sent.duplicate);
    assert_int_equal(items[1].sent.id, items[0].sent.id);
    assert_int_equal(items[2].err, 0);
    assert_true(items[2].sent.id > items[0].sent.id);
    assert_true(items[3].err < 0);
    assert_int_equal(items[4].err, 0);
    assert_true(items[4].sent.id > items[2].sent.id);

    assert_int_equal(store_fetch(d->s, "lobby", 5, 0, 100, 0, &page, &f), 0);
    assert_int_equal(page.n, 3);
    assert_string_equal(page.msgs[0].text, "a");
    assert_string_equal(page.msgs[1].text, "c");
    assert_string_equal(page.msgs[2].text, "e");
    assert_int_equal(page.msgs[0].ts, items[0].sent.ts);
    store_page_free(&page);

    /* Another process holds the write lock: the whole batch is refused alike. */
    struct store_opts quick = { .path = d->path, .busy_ms = 50 };
    struct store *s2;
    assert_int_equal(store_open(&quick, &s2, &f), 0);
    assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_append_batch(s2, ptrs, 3), CHAT_EUNAVAIL);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(items[i].err, CHAT_EUNAVAIL);
        assert_non_null(strstr(items[i].fail.msg, "busy"));
    }
    assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    store_close(s2);
    sqlite3_close(db);
}

static void test_store_changes(void **state)
{
    struct db *d = *state;
    struct store *other;
    struct store_opts o = { .path = d->path, .busy_ms = 1000 };
    struct store_sent a;
    struct chat_fail f;
    struct store_page page;
    int64_t v1, v2, v3;

    assert_int_equal(store_open(&o, &other, &f), 0);
    assert_int_equal(store_data_version(d->s, &v1, &f), 0);
    send_one(other, "x", "from another connection", NULL, &a);
    assert_int_equal(store_data_version(d->s, &v2, &f), 0);
    assert_true(v2 != v1);
    assert_int_equal(store_data_version(d->s, &v3, &f), 0);
    assert_true(v3 == v2);
    send_one(other, "y", "more", NULL, &a);
    /* The watcher's read: every room's rows after an id, in id order. */
    assert_int_equal(store_since(d->s, 0, 10, &page, &f), 0);
    assert_int_equal(page.n, 2);
    assert_string_equal(page.msgs[0].room, "x");
    assert_string_equal(page.msgs[1].room, "y");
    store_page_free(&page);
    store_close(other);
}

/* ---- notify.c, retain.c, metrics.c: the pure parts ---- */

static void test_notify_recheck(void **state)
{
    struct notify n = { .fd = -1 };

    (void)state;
    /* A timer probe with no write pending: the usual timer. */
    assert_int_equal(notify_recheck_ms(&n, false, false), -1);
    /* A write whose commit is visible at once: nothing more to do. */
    assert_int_equal(notify_recheck_ms(&n, true, true), -1);
    /* A write not visible yet: look again after 1, 2, 4 ... 32 ms, then give up. */
    assert_int_equal(notify_recheck_ms(&n, true, false), 1);
    assert_int_equal(notify_recheck_ms(&n, false, false), 2);
    assert_int_equal(notify_recheck_ms(&n, false, false), 4);
    assert_int_equal(notify_recheck_ms(&n, false, false), 8);
    assert_int_equal(notify_recheck_ms(&n, false, false), 16);
    assert_int_equal(notify_recheck_ms(&n, false, false), 32);
    assert_int_equal(notify_recheck_ms(&n, false, false), -1);
    assert_int_equal(notify_recheck_ms(&n, false, false), -1);
    /* Found on a recheck: the sequence ends; a new write starts it again. */
    assert_int_equal(notify_recheck_ms(&n, true, false), 1);
    assert_int_equal(notify_recheck_ms(&n, false, true), -1);
    assert_int_equal(notify_recheck_ms(&n, false, false), -1);
    assert_int_equal(notify_recheck_ms(&n, true, false), 1);
    assert_int_equal(notify_recheck_ms(&n, true, false), 1);
}

static void test_retain_parse_age(void **state)
{
    (void)state;
    assert_int_equal(retain_parse_age("45s"), 45000);
    assert_int_equal(retain_parse_age("90m"), 90 * 60000);
    assert_int_equal(retain_parse_age("12h"), 12 * 3600000LL);
    assert_int_equal(retain_parse_age("30d"), 30 * 86400000LL);
    /* At most 8640000000 of any unit (100000 days in seconds), so no unit overflows. */
    assert_int_equal(retain_parse_age("8640000000d"), 8640000000LL * 86400000LL);
    assert_int_equal(retain_parse_age("8640000001s"), -1);
    assert_int_equal(retain_parse_age("0s"), -1);
    assert_int_equal(retain_parse_age("10"), -1);
    assert_int_equal(retain_parse_age("d"), -1);
    assert_int_equal(retain_parse_age(""), -1);
    assert_int_equal(retain_parse_age("5w"), -1);
    assert_int_equal(retain_parse_age("-5s"), -1);
    assert_int_equal(retain_parse_age("5 s"), -1);
}

/* The value of one sample line of a rendered /metrics page, or -1. */
static long long metric_value(const char *page, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = page; (p = strstr(p, sample)); p += n)
        if ((p == page || p[-1] == '\n') && p[n] == ' ')
            return atoll(p + n + 1);
    return -1;
}

static void test_metrics_request(void **state)
{
    const char *ok = "chat_requests_total{route=\"/get/msg\",status=\"200\"}";
    const char *odd = "chat_requests_total{route=\"other\",status=\"500\"}";
    size_t len;
    char *before, *after;

    (void)state;
    before = metrics_render(0, 0, &len);
    assert_non_null(before);
    metrics_request(MR_GET, 200);
    metrics_request(MR_GET, 200);
    /* A status the page does not list counts as a 500. */
    metrics_request(MR_OTHER, 418);
    metrics_stored(3);
    after = metrics_render(7, 42, &len);
    assert_non_null(after);
    assert_int_equal(strlen(after), len);
    assert_int_equal(metric_value(after, ok), metric_value(before, ok) + 2);
    assert_int_equal(metric_value(after, odd), metric_value(before, odd) + 1);
    assert_int_equal(metric_value(after, "chat_messages_stored_total"),
                     metric_value(before, "chat_messages_stored_total") + 3);
    assert_int_equal(metric_value(after, "chat_commits_total"),
                     metric_value(before, "chat_commits_total") + 1);
    assert_int_equal(metric_value(after, "chat_held_longpolls"), 7);
    assert_int_equal(metric_value(after, "chat_change_probes_total"), 42);
    free(before);
    free(after);
}

/* ---- hold.c ---- */

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "hold.h"

/*
 * The hold needs real FastCGI requests: a unix socket that libfcgi accepts
 * on, and a client end that sends what nginx sends for a GET (the request,
 * no parameters, an empty body) and reads the answer back.
 */
struct hold_env {
    char sock[80];
    int listen_fd;
    struct hold *h;
};

/* Pauses the watcher once, in flight (hold_test_hook), until the test says go. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed, reached, go;
} pause_at = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, false };

static void deadline_in(struct timespec *ts, int seconds)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += seconds;
}

static void pause_hook(struct hold *h)
{
    struct timespec until;
    (void)h;
    deadline_in(&until, 10);
    pthread_mutex_lock(&pause_at.mu);
    if (pause_at.armed) {
        pause_at.armed = false;
        pause_at.reached = true;
        pthread_cond_broadcast(&pause_at.cv);
        while (!pause_at.go && pthread_cond_timedwait(&pause_at.cv, &pause_at.mu, &until) == 0)
            ;
    }
    pthread_mutex_unlock(&pause_at.mu);
}

static void pause_arm(void)
{
    pthread_mutex_lock(&pause_at.mu);
    pause_at.armed = true;
    pause_at.reached = pause_at.go = false;
    pthread_mutex_unlock(&pause_at.mu);
    hold_test_hook = pause_hook;
}

/* Waits (10 s at most) until the watcher is paused; true when it is. */
static bool pause_reached(void)
{
    struct timespec until;
    bool reached;
    deadline_in(&until, 10);
    pthread_mutex_lock(&pause_at.mu);
    while (!pause_at.reached && pthread_cond_timedwait(&pause_at.cv, &pause_at.mu, &until) == 0)
        ;
    reached = pause_at.reached;
    pthread_mutex_unlock(&pause_at.mu);
    return reached;
}

static void pause_release(void)
{
    pthread_mutex_lock(&pause_at.mu);
    pause_at.go = true;
    pthread_cond_broadcast(&pause_at.cv);
    pthread_mutex_unlock(&pause_at.mu);
}

static void hold_env_start(struct hold_env *e, const char *db_path)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    struct hold_opts o = { .store = { .path = db_path, .busy_ms = 1000 }, .max_held = 16,
                           .probe_ms = 20 };
    struct chat_fail f;

    snprintf(e->sock, sizeof e->sock, "%s.sock", db_path);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", e->sock);
    unlink(e->sock);
    assert_int_equal(FCGX_Init(), 0);
    e->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(e->listen_fd >= 0);
    assert_int_equal(bind(e->listen_fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(e->listen_fd, 8), 0);
    assert_int_equal(hold_start(&o, &e->h, &f), 0);
}

static void hold_env_stop(struct hold_env *e)
{
    hold_test_hook = NULL;
    hold_stop(e->h);
    close(e->listen_fd);
    unlink(e->sock);
}

/* A request accepted by libfcgi (malloc'd, as the hold frees it); *client is nginx's end. */
static FCGX_Request *fcgi_request(struct hold_env *e, int *client)
{
    static const unsigned char records[] = {
        1, 1, 0, 1, 0, 8, 0, 0,  0, 1, 0, 0, 0, 0, 0, 0,   /* BEGIN_REQUEST: responder */
        1, 4, 0, 1, 0, 0, 0, 0,                            /* PARAMS: none */
        1, 5, 0, 1, 0, 0, 0, 0,                            /* STDIN: empty */
    };
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    FCGX_Request *r = calloc(1, sizeof *r);

    assert_non_null(r);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", e->sock);
    *client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(*client >= 0);
    assert_int_equal(connect(*client, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(write(*client, records, sizeof records), (ssize_t)sizeof records);
    assert_int_equal(FCGX_InitRequest(r, e->listen_fd, 0), 0);
    assert_int_equal(FCGX_Accept_r(r), 0);
    return r;
}

/*
 * Reads the answer until the hold closes the connection (15 s at most) and
 * returns its FCGI_STDOUT bytes, NUL-terminated, in out; closes client.
 */
static void fcgi_answer(int client, char *out, size_t size)
{
    static unsigned char raw[65536];
    size_t got = 0, n = 0;
    int64_t until = util_now_ms() + 15000;
    ssize_t k;

    for (;;) {
        struct pollfd p = { .fd = client, .events = POLLIN };
        int64_t left = until - util_now_ms();
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if ((k = read(client, raw + got, sizeof raw - got)) <= 0)
            break;
        got += (size_t)k;
    }
    close(client);
    for (size_t at = 0; at + 8 <= got; ) {
        size_t clen = (size_t)raw[at + 4] << 8 | raw[at + 5], pad = raw[at + 6];
        if (at + 8 + clen > got)
            break;
        if (raw[at + 1] == 6 && n + clen < size) {   /* FCGI_STDOUT */
            memcpy(out + n, raw + at + 8, clen);
            n += clen;
        }
        at += 8 + clen + pad;
    }
    out[n] = '\0';
}

static struct get_args get_room(const char *room, int64_t index)
{
    return (struct get_args){ .room = room, .room_len = strlen(room), .index = index,
                              .limit = 100, .wait = 5 };
}

/*
 * The interleaving: waiter A is in flight (taken by the watcher,
 * nothing new for it yet), row 3 of its room commits, and C parks alone
 * with seen_id 3 while A is out of the table. Nothing may move a cursor
 * past row 3 for A: once put back, A must be answered with "three", not
 * with an empty page when its wait ends. A is taken by the watcher as a
 * park behind what was dispatched (its snapshot predates row 2, of
 * another room), the one way a waiter is read with nothing new.
 */
static void test_hold_in_flight_wakeup(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two, three;
    struct get_args ga, gc;
    struct chat_fail f;
    FCGX_Request *a, *c;
    int ca, cc;
    static char body_a[65536], body_c[65536];

    send_one(d->s, "r", "one", NULL, &one);
    send_one(d->s, "x", "two", NULL, &two);
    hold_env_start(&e, d->path);
    pause_arm();
    /* A read its room before row 2 was stored: the watcher reads it by cursor. */
    a = fcgi_request(&e, &ca);
    ga = get_room("r", one.id);
    assert_int_equal(hold_park(e.h, a, &ga, one.id, &f), 0);
    /* Row 2 is another room's: A has nothing new and is paused on its way back. */
    assert_true(pause_reached());
    send_one(d->s, "r", "three", NULL, &three);
    c = fcgi_request(&e, &cc);
    gc = get_room("c", 0);
    assert_int_equal(hold_park(e.h, c, &gc, three.id, &f), 0);
    pause_release();

    fcgi_answer(ca, body_a, sizeof body_a);
    hold_env_stop(&e);
    fcgi_answer(cc, body_c, sizeof body_c);
    assert_true(two.id > one.id);
    assert_non_null(strstr(body_a, "Status: 200"));
    assert_non_null(strstr(body_a, "\"data\":[\"three\"]"));
    assert_non_null(strstr(body_c, "\"data\":[]"));
}

/*
 * A read of the watcher that fails puts its waiters back; the cursor must
 * not stay past the rows they were taken for: once reads work again, A is
 * answered with row 2. The read is made to fail by dropping the table the
 * room's read (and only it) needs, and restored while A is in flight.
 */
static void test_hold_failed_read_retried(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two;
    struct get_args ga;
    struct chat_fail f;
    FCGX_Request *a;
    sqlite3 *db;
    int ca;
    static char body[65536];

    send_one(d->s, "r", "one", NULL, &one);
    hold_env_start(&e, d->path);
    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE pruned", NULL, NULL, NULL), SQLITE_OK);
    pause_arm();
    a = fcgi_request(&e, &ca);
    ga = get_room("r", one.id);
    assert_int_equal(hold_park(e.h, a, &ga, one.id, &f), 0);
    send_one(d->s, "r", "two", NULL, &two);
    assert_true(pause_reached());
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE pruned (room TEXT PRIMARY KEY,"
                                  " upto INTEGER NOT NULL)", NULL, NULL, NULL), SQLITE_OK);
    pause_release();

    fcgi_answer(ca, body, sizeof body);
    hold_env_stop(&e);
    sqlite3_close(db);
    assert_non_null(strstr(body, "\"data\":[\"two\"]"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_chars),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_send_rules),
        cmocka_unit_test(test_urlencoded),
        cmocka_unit_test(test_urlencoded_errors),
        cmocka_unit_test(test_query_and_body_clash),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_duplicates),
        cmocka_unit_test(test_get_args),
        cmocka_unit_test(test_render_page),
        cmocka_unit_test(test_render_repairs_utf8),
        cmocka_unit_test(test_render_sent_and_error),
        cmocka_unit_test(test_render_sse_ready),
        cmocka_unit_test(test_util_put),
        cmocka_unit_test(test_util_parse_int),
        cmocka_unit_test_setup_teardown(test_store_append_fetch, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_store_append_batch, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_store_changes, db_setup, db_teardown),
        cmocka_unit_test(test_notify_recheck),
        cmocka_unit_test(test_retain_parse_age),
        cmocka_unit_test(test_metrics_request),
        cmocka_unit_test_setup_teardown(test_hold_in_flight_wakeup, db_setup, db_teardown),
        cmocka_unit_test_setup_teardown(test_hold_failed_read_retried, db_setup, db_teardown),
    };
    return cmocka_run_group_tests_name("unit", tests, NULL, NULL);
}
