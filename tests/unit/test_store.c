/*
 * test_store.c - the store on a temporary SQLite file, and the pure parts
 * of notify, retain and metrics.
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
#include "metrics.h"
#include "notify.h"
#include "retain.h"
#include "sendq.h"
#include "store.h"
#include "unit.h"

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
    assert_int_equal(notify_recheck_us(&n, false, false), -1);
    /* A write whose commit is visible at once: nothing more to do. */
    assert_int_equal(notify_recheck_us(&n, true, true), -1);
    /* A write not visible yet: look again after 0.1, 0.2 ... 25.6 ms, then give up. */
    assert_int_equal(notify_recheck_us(&n, true, false), 100);
    for (int us = 200; us <= 25600; us *= 2)
        assert_int_equal(notify_recheck_us(&n, false, false), us);
    assert_int_equal(notify_recheck_us(&n, false, false), -1);
    assert_int_equal(notify_recheck_us(&n, false, false), -1);
    /* Found on a recheck: the sequence ends; a new write starts it again. */
    assert_int_equal(notify_recheck_us(&n, true, false), 100);
    assert_int_equal(notify_recheck_us(&n, false, true), -1);
    assert_int_equal(notify_recheck_us(&n, false, false), -1);
    assert_int_equal(notify_recheck_us(&n, true, false), 100);
    assert_int_equal(notify_recheck_us(&n, true, false), 100);
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

/* ---- sendq.c ---- */

static void test_sendq(void **state)
{
    struct valid_send m = { .text = "t", .text_len = 1, .user = "", .room = "r", .room_len = 1 };
    struct sendq_job *batch[CHAT_BATCH_MAX], *j;
    struct sendq q;
    struct chat_fail f;
    bool drain;

    (void)state;
    assert_int_equal(sendq_init(&q, 3, 4, &f), 0);
    /* The first push claims the drain; the others join it. */
    for (int i = 0; i < 3; i++) {
        assert_non_null(j = sendq_job_new(&m));
        assert_int_equal(sendq_push(&q, j, &drain, &f), 0);
        assert_true(drain == (i == 0));
    }
    /* Beyond max_queued: refused at once, the job freed. */
    assert_non_null(j = sendq_job_new(&m));
    assert_int_equal(sendq_push(&q, j, &drain, &f), CHAT_EUNAVAIL);
    /* 3 queued, fewer than gather (4): a wait for the turn to write would fill the batch. */
    assert_true(sendq_short(&q));
    assert_int_equal(sendq_next_batch(&q, batch, false), 3);
    assert_false(sendq_short(&q));     /* nothing queued */
    assert_string_equal(batch[0]->msg.text, "t");
    for (int i = 0; i < 3; i++)
        free(batch[i]);
    /* The empty take ends the drain, and is not a batch: the next drain gathers. */
    assert_int_equal(sendq_next_batch(&q, batch, false), 0);
    assert_int_equal(q.last_batch, 3);
    assert_false(q.draining);
    assert_non_null(j = sendq_job_new(&m));
    assert_int_equal(sendq_push(&q, j, &drain, &f), 0);
    assert_true(drain);
    assert_int_equal(sendq_next_batch(&q, batch, true), 1);
    free(batch[0]);
    assert_int_equal(sendq_next_batch(&q, batch, false), 0);
    sendq_destroy(&q);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_sendq),
    cmocka_unit_test_setup_teardown(test_store_append_fetch, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_store_append_batch, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_store_changes, db_setup, db_teardown),
    cmocka_unit_test(test_notify_recheck),
    cmocka_unit_test(test_retain_parse_age),
    cmocka_unit_test(test_metrics_request),
};

const struct CMUnitTest *store_tests(size_t *n)
{
    *n = sizeof tests / sizeof tests[0];
    return tests;
}
