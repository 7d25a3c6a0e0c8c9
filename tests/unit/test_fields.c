/*
 * test_fields.c - the pure modules: field rules, decoding, rendering, numbers.
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

#include "chat_limits.h"
#include "json_names.h"
#include "log.h"
#include "params.h"
#include "render.h"
#include "util.h"
#include "valid.h"
#include "unit.h"

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
        /* json-c takes these even in strict mode; RFC 8259 does not. */
        "{\"text\":\"a\",\"n\":NaN}", "{\"text\":\"a\",\"n\":Infinity}", "{\"text\":\"a\",\"n\":-Infinity}",
        "{\"text\":\"a\",\"n\":1.}", "{\"text\":\"a\",\"n\":01}", "{\"text\":\"a\",\"n\":1e}",
        "{\"text\":\"a\",\"n\":-}", "{\"text\":\"a\",\"n\":truex}", "{\"text\":\"raw\nnewline\"}",
        "{\"text\":\"raw\ttab\"}", "{'text':\"a\"}", "{\"text\":'a'}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        params_init(&p);
        assert_int_equal(params_add_json(&p, bad[i], strlen(bad[i]), PARAMS_SEND_KEYS, &f), CHAT_EBADREQ);
        params_free(&p);
    }
    /* Every token of RFC 8259's grammar passes. */
    static const char *const good[] = {
        "{\"text\":\"a\",\"n\":[-0,0.5,1e3,-12.5E-3,2E+2,true,false,null,{}]}",
        "{\"text\":\"tab\\tnewline\\n\\\"quote\\u00e9\"}", " \r\n\t{\"text\" : \"a\" }\n",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        params_init(&p);
        assert_int_equal(params_add_json(&p, good[i], strlen(good[i]), PARAMS_SEND_KEYS, &f), 0);
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
    /* A single-quoted name is not JSON (json-c would take it). */
    assert_int_equal(JSON_STATUS("{'text':\"a\",\"text\":\"b\"}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "not valid JSON"));
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
    /* A single-quoted name is not JSON (json-c would take it, with a double quote and a brace in it). */
    assert_int_equal(JSON_STATUS("{'a\"}':1,\"text\":\"a\",\"a\\\"}\":2}", msg), CHAT_EBADREQ);
    assert_int_equal(JSON_STATUS("{'a\"}':1,\"text\":\"a\"}", msg), CHAT_EBADREQ);
    assert_non_null(strstr(msg, "not valid JSON"));

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

/* ---- log.c: passwords of a --db never in a log line ---- */

static void expect_mask(const char *in, const char *want)
{
    char out[256];
    assert_int_equal(log_mask(in, strlen(in), out, sizeof out), strlen(want));
    assert_string_equal(out, want);
}

static void test_log_mask(void **state)
{
    (void)state;
    expect_mask("database postgresql://chat:s3cret@db.example/chat",
                "database postgresql://chat:***@db.example/chat");
    expect_mask("postgres://u:p%40ss@h:5432/db?sslmode=require", "postgres://u:***@h:5432/db?sslmode=require");
    expect_mask("postgresql://u:a?b#c@h/db", "postgresql://u:***@h/db");
    expect_mask("postgresql:///chat?host=/tmp&password=s3cret&user=u",
                "postgresql:///chat?host=/tmp&password=***&user=u");
    expect_mask("host=db password=s3cret user=u", "host=db password=*** user=u");
    expect_mask("host=db PASSWORD = 'a b\\' c' user=u", "host=db PASSWORD = *** user=u");
    /* No password: unchanged; a port or a user alone is not one. */
    expect_mask("postgresql://chat@db.example:5432/chat", "postgresql://chat@db.example:5432/chat");
    expect_mask("listening on 127.0.0.1:8081, database chat.db", "listening on 127.0.0.1:8081, database chat.db");
    expect_mask("passwords=x mypassword=y", "passwords=x mypassword=y");
    /* A password libpq echoes bare (a bad percent-encoding): masked once noted. */
    expect_mask("invalid percent-encoded token: \"p%zzword\"", "invalid percent-encoded token: \"p%zzword\"");
    log_secrets_of("postgresql://u:p%zzword@h/db");
    expect_mask("invalid percent-encoded token: \"p%zzword\"", "invalid percent-encoded token: \"***\"");
}

static const struct CMUnitTest tests[] = {
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
    cmocka_unit_test(test_log_mask),
};

const struct CMUnitTest *fields_tests(size_t *n)
{
    *n = sizeof tests / sizeof tests[0];
    return tests;
}
