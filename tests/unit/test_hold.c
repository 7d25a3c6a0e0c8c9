/*
 * test_hold.c - the parking lot of long-polls on real FastCGI requests,
 * with a hook that forces the watcher's interleavings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "hold.h"
#include "reply.h"
#include "store.h"
#include "unit.h"
#include "util.h"

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
/* nginx's end of a new connection to the hold's socket. */
static int client_connect(const struct hold_env *e)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    assert_true(client >= 0);
    snprintf(a.sun_path, sizeof a.sun_path, "%s", e->sock);
    assert_int_equal(connect(client, (struct sockaddr *)&a, sizeof a), 0);
    return client;
}

/* Writes what nginx sends for a GET (no parameters, an empty body), FCGI_KEEP_CONN when keep. */
static void send_get(int client, bool keep)
{
    unsigned char records[] = {
        1, 1, 0, 1, 0, 8, 0, 0,  0, 1, keep, 0, 0, 0, 0, 0,   /* BEGIN_REQUEST: responder, flags */
        1, 4, 0, 1, 0, 0, 0, 0,                               /* PARAMS: none */
        1, 5, 0, 1, 0, 0, 0, 0,                               /* STDIN: empty */
    };

    assert_int_equal(write(client, records, sizeof records), (ssize_t)sizeof records);
}

static FCGX_Request *fcgi_request(struct hold_env *e, int *client)
{
    FCGX_Request *r = calloc(1, sizeof *r);

    assert_non_null(r);
    *client = client_connect(e);
    send_get(*client, false);
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
    assert_int_equal(hold_park(e.h, a, 0, &ga, one.id, &f), 0);
    /* Row 2 is another room's: A has nothing new and is paused on its way back. */
    assert_true(pause_reached());
    send_one(d->s, "r", "three", NULL, &three);
    c = fcgi_request(&e, &cc);
    gc = get_room("c", 0);
    assert_int_equal(hold_park(e.h, c, 0, &gc, three.id, &f), 0);
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
 * A read of the watcher that fails answers its waiters at once with the
 * refusal a worker's failed read would give (here a database error, 500
 * JSON; the database away is a 503 with Retry-After, tests/it/pg.sh), and
 * the cursor does not move past the rows they were taken for: once reads
 * work again, the client's next poll at the same cursor gets row 2. The
 * read is made to fail by dropping the table the room's read (and only
 * it) needs.
 */
static void test_hold_failed_read_refused(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two;
    struct get_args ga;
    struct chat_fail f;
    FCGX_Request *a, *b;
    sqlite3 *db;
    int ca, cb;
    static char body_a[65536], body_b[65536];

    send_one(d->s, "r", "one", NULL, &one);
    hold_env_start(&e, d->path);
    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DROP TABLE pruned", NULL, NULL, NULL), SQLITE_OK);
    a = fcgi_request(&e, &ca);
    ga = get_room("r", one.id);
    assert_int_equal(hold_park(e.h, a, 0, &ga, one.id, &f), 0);
    send_one(d->s, "r", "two", NULL, &two);
    fcgi_answer(ca, body_a, sizeof body_a);
    assert_non_null(strstr(body_a, "Status: 500"));
    assert_non_null(strstr(body_a, "{\"error\":\"database error"));

    assert_int_equal(sqlite3_exec(db, "CREATE TABLE pruned (room TEXT PRIMARY KEY,"
                                  " upto INTEGER NOT NULL)", NULL, NULL, NULL), SQLITE_OK);
    b = fcgi_request(&e, &cb);
    assert_int_equal(hold_park(e.h, b, 0, &ga, one.id, &f), 0);
    fcgi_answer(cb, body_b, sizeof body_b);
    hold_env_stop(&e);
    sqlite3_close(db);
    assert_non_null(strstr(body_b, "\"data\":[\"two\"]"));
}

/*
 * Re-polls parked without a read (hold_try_park): at the room's latest id
 * handed over, the request waits for the next row; behind it, the watcher
 * answers with the rows after its cursor; ahead of it, or in a room with
 * no row handed over, the caller reads.
 */
static void test_hold_try_park(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two, three;
    struct get_args g;
    struct chat_fail f;
    FCGX_Request *a, *b, *c, *x;
    int ca, cb, cc, cx;
    static char body[65536];

    send_one(d->s, "r", "one", NULL, &one);
    hold_env_start(&e, d->path);
    a = fcgi_request(&e, &ca);
    g = get_room("r", one.id);
    /* No row of r handed over since start: not known. */
    assert_int_equal(hold_try_park(e.h, a, 0, &g, &f), 1);
    assert_int_equal(hold_park(e.h, a, 0, &g, one.id, &f), 0);
    send_one(d->s, "r", "two", NULL, &two);
    fcgi_answer(ca, body, sizeof body);
    assert_non_null(strstr(body, "\"data\":[\"two\"]"));

    /* Behind the latest id handed over: answered by the watcher. */
    b = fcgi_request(&e, &cb);
    g = get_room("r", one.id);
    assert_int_equal(hold_try_park(e.h, b, 0, &g, &f), 0);
    fcgi_answer(cb, body, sizeof body);
    assert_non_null(strstr(body, "Status: 200"));
    assert_non_null(strstr(body, "\"data\":[\"two\"]"));

    /* At it: waits for the next row. */
    c = fcgi_request(&e, &cc);
    g = get_room("r", two.id);
    assert_int_equal(hold_try_park(e.h, c, 0, &g, &f), 0);
    send_one(d->s, "r", "three", NULL, &three);
    fcgi_answer(cc, body, sizeof body);
    assert_non_null(strstr(body, "\"data\":[\"three\"]"));

    /* Ahead of it, or another room: the caller reads. */
    x = fcgi_request(&e, &cx);
    g = get_room("r", three.id + 5);
    assert_int_equal(hold_try_park(e.h, x, 0, &g, &f), 1);
    g = get_room("other", 0);
    assert_int_equal(hold_try_park(e.h, x, 0, &g, &f), 1);
    FCGX_Finish_r(x);
    free(x);
    close(cx);
    hold_env_stop(&e);
}

/*
 * The database replaced under a held request (ids went back): a cursor now
 * ahead of the room is answered at once with the room's latest id, so the
 * client resyncs (as a read answers it), not left to its deadline.
 */
static void test_hold_ids_went_back(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two, three, again;
    struct get_args g;
    struct chat_fail f;
    FCGX_Request *a;
    sqlite3 *db;
    int ca;
    int64_t t0;
    static char body[65536];

    send_one(d->s, "r", "one", NULL, &one);
    send_one(d->s, "r", "two", NULL, &two);
    send_one(d->s, "r", "three", NULL, &three);
    hold_env_start(&e, d->path);
    a = fcgi_request(&e, &ca);
    g = get_room("r", three.id);
    assert_int_equal(hold_park(e.h, a, 0, &g, three.id, &f), 0);
    /* Replaced: every row gone and the ids counted again from 1. */
    assert_int_equal(sqlite3_open(d->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "DELETE FROM messages; DELETE FROM sqlite_sequence", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    send_one(d->s, "r", "new", NULL, &again);
    assert_true(again.id < three.id);
    t0 = util_now_ms();
    fcgi_answer(ca, body, sizeof body);
    hold_env_stop(&e);
    assert_true(util_now_ms() - t0 < 3000);     /* its wait is 5 s */
    assert_non_null(strstr(body, "Status: 200"));
    {
        /* The room's latest id when the watcher saw the ids go back: 0, or the new row's. */
        const char *mi = strstr(body, "\"max_index\":");
        assert_non_null(mi);
        long long got = atoll(mi + strlen("\"max_index\":"));
        assert_true(got == 0 || got == again.id);
    }
}

/*
 * Waiters of one room at several cursors and limits, taken by the watcher
 * together: each answer is what a read at its own cursor gives (rows,
 * more), whatever reads the watcher shares between them; the one at the
 * latest id waits for the next row.
 */
static void test_hold_cursors_of_one_room(void **state)
{
    /* The first waits; the others are parked while the watcher is paused with it, so they come together. */
    static const struct { int64_t index; int limit; const char *data; const char *more; } want[] = {
        { 10, 3, "\"data\":[\"m11\"]", "\"more\":false" },
        { 0, 2, "\"data\":[\"m1\",\"m2\"]", "\"more\":true" },
        { 5, 3, "\"data\":[\"m6\",\"m7\",\"m8\"]", "\"more\":true" },
        { 8, 3, "\"data\":[\"m9\",\"m10\"]", "\"more\":false" },
        { 0, 2, "\"data\":[\"m1\",\"m2\"]", "\"more\":true" },
    };
    enum { N = sizeof want / sizeof want[0] };
    struct db *d = *state;
    struct hold_env e;
    struct store_sent sent;
    struct chat_fail f;
    int client[N];
    static char body[65536];

    for (int i = 1; i <= 10; i++) {
        char text[8];
        snprintf(text, sizeof text, "m%d", i);
        send_one(d->s, "r", text, NULL, &sent);
        assert_int_equal(sent.id, i);
    }
    hold_env_start(&e, d->path);
    pause_arm();
    for (int i = 0; i < N; i++) {
        FCGX_Request *r = fcgi_request(&e, &client[i]);
        struct get_args g = get_room("r", want[i].index);
        g.limit = want[i].limit;
        /* A snapshot older than the start: each is read by cursor. */
        assert_int_equal(hold_park(e.h, r, 0, &g, 0, &f), 0);
        if (i == 0)
            assert_true(pause_reached());
    }
    pause_release();
    for (int i = 1; i < N; i++) {
        fcgi_answer(client[i], body, sizeof body);
        assert_non_null(strstr(body, "Status: 200"));
        assert_non_null(strstr(body, want[i].data));
        assert_non_null(strstr(body, want[i].more));
    }
    send_one(d->s, "r", "m11", NULL, &sent);
    fcgi_answer(client[0], body, sizeof body);
    hold_env_stop(&e);
    assert_non_null(strstr(body, want[0].data));
    assert_non_null(strstr(body, want[0].more));
}

/* A keeper of kept connections that leaves them to the test (chat-fcgi's workers take them). */
static void keep_for_test(void *ctx, int fd, bool open)
{
    (void)ctx;
    (void)fd;
    (void)open;
}

/* Sends a keep-conn GET on client and has libfcgi read it from fd. */
static FCGX_Request *kept_request(int client, int fd)
{
    FCGX_Request *r = calloc(1, sizeof *r);

    assert_non_null(r);
    send_get(client, true);
    /* As chat-fcgi's workers read a request from a kept connection. */
    FCGX_InitRequest(r, -1, 0);
    r->ipcFd = fd;
    r->keepConnection = 1;
    FCGX_Detach(r);
    assert_int_equal(FCGX_Accept_r(r), 0);
    /* Its (empty) body read to the end, as the router does: then the connection may be kept. */
    assert_int_equal(FCGX_GetChar(r->in), EOF);
    return r;
}

/* Reads from client until an FCGI_END_REQUEST record has come (5 s at most); true when it has. */
static bool read_until_end(int client)
{
    unsigned char raw[65536];
    size_t got = 0;
    int64_t until = util_now_ms() + 5000;

    for (;;) {
        struct pollfd p = { .fd = client, .events = POLLIN };
        int64_t left = until - util_now_ms();
        ssize_t k;
        size_t at = 0;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0 ||
            (k = read(client, raw + got, sizeof raw - got)) <= 0)
            return false;
        got += (size_t)k;
        while (at + 8 <= got) {
            size_t clen = (size_t)raw[at + 4] << 8 | raw[at + 5], pad = raw[at + 6];
            if (raw[at + 1] == 3 && at + 8 + clen <= got)
                return true;
            at += 8 + clen + pad;
        }
    }
}

/*
 * A kept connection answered, then parked again with its next request
 * after nginx closed it (the client left in between): a connection
 * already registered is not registered again, but one whose end was
 * reported while nothing was parked on it is, so its waiter is released
 * at once rather than at the end of its wait (5 s).
 */
static void test_hold_kept_connection_ended_between(void **state)
{
    struct db *d = *state;
    struct hold_env e;
    struct store_sent one, two;
    struct get_args g;
    struct chat_fail f;
    FCGX_Request *first, *second;
    int client, fd;
    int64_t t0;
    bool released = false;

    send_one(d->s, "r", "one", NULL, &one);
    hold_env_start(&e, d->path);
    reply_keeper(keep_for_test, NULL);
    client = client_connect(&e);
    assert_true((fd = accept(e.listen_fd, NULL, NULL)) >= 0);
    first = kept_request(client, fd);
    g = get_room("r", one.id);
    assert_int_equal(hold_park(e.h, first, 7, &g, one.id, &f), 0);
    send_one(d->s, "r", "two", NULL, &two);
    assert_true(read_until_end(client));
    /* The next request, then the end of the connection, seen by the hold with nothing parked. */
    second = kept_request(client, fd);
    shutdown(client, SHUT_WR);
    usleep(300000);
    g = get_room("r", two.id);
    t0 = util_now_ms();
    assert_int_equal(hold_park(e.h, second, 7, &g, two.id, &f), 0);
    while (!released && util_now_ms() - t0 < 3000) {
        released = hold_count(e.h) == 0;
        usleep(10000);
    }
    reply_keeper(NULL, NULL);
    hold_env_stop(&e);
    close(client);
    assert_true(released);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_hold_in_flight_wakeup, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_hold_failed_read_refused, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_hold_try_park, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_hold_ids_went_back, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_hold_cursors_of_one_room, db_setup, db_teardown),
    cmocka_unit_test_setup_teardown(test_hold_kept_connection_ended_between, db_setup, db_teardown),
};

const struct CMUnitTest *hold_tests(size_t *n)
{
    *n = sizeof tests / sizeof tests[0];
    return tests;
}
