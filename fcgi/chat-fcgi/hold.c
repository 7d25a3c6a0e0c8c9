/*
 * hold.c - the parking lot of long-polls, a consumer of the watcher
 * (watch.h), which calls it on its thread.
 *
 * A parked request (a waiter) is in exactly one place, all counted in
 * count: the table (hashed by room), the check list, or in the hands of
 * the watcher thread while it answers a group.
 *
 * The one-cursor promise: every row after a waiter's snapshot (seen_id)
 * in its room reaches it. The watcher hands rows over in id order;
 * `dispatched` is the last id handed over. A waiter that parks with
 * seen_id >= dispatched is in the table before any later row is handed
 * over, and each batch takes the waiters of the rooms it names. One that
 * parks with seen_id < dispatched may have missed rows in between: it goes
 * to the check list, which the watcher thread reads by cursor on its next
 * turn. A waiter whose read finds nothing goes back into the table on the
 * watcher thread, before the next batch. So no park ever moves a cursor.
 *
 * The database away: a waiter whose read fails is answered at once as a
 * request read by a worker would be (503 with Retry-After), and one
 * whose wait ends while the watcher's reads fail gets the same (it may
 * have missed rows, so "nothing new" would be a guess). The client comes
 * back with the same cursor: nothing is lost either way.
 *
 * Locking: h->mu guards the table, the check list, dispatched and
 * next_deadline. Reads, rendering and writes happen outside it, so parking
 * never waits for a fan-out.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hold.h"
#include "chat_limits.h"
#include "log.h"
#include "metrics.h"
#include "render.h"
#include "reply.h"
#include "util.h"
#include "watch.h"

struct waiter {
    LIST_ENTRY(waiter) link;   /* in a bucket, the check list or a local list */
    int fd;                    /* the request's connection, open */
    int request_id;            /* its FastCGI request id */
    bool keep;                 /* nginx asked to keep the connection (FCGI_KEEP_CONN) */
    int64_t index;
    int64_t deadline;          /* util_now_ms() at which the wait expires */
    int limit, tail;
    unsigned bucket;
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
};

LIST_HEAD(wlist, waiter);

/* The latest id of a room among the rows handed over (see hold_try_park). */
struct known {
    LIST_ENTRY(known) link;
    int64_t id;
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
};

LIST_HEAD(klist, known);

struct hold {
    pthread_mutex_t mu;
    struct wlist buckets[CHAT_HOLD_BUCKETS];
    struct wlist check;        /* parked behind dispatched: read by cursor */
    atomic_size_t count;       /* parked anywhere; changed under mu */
    size_t max_held;
    int64_t dispatched;        /* rows up to this id were handed to waiters */
    int64_t next_deadline;     /* no waiter expires before this */
    bool check_kicked;         /* the watcher was kicked for the check list and has not taken it */
    bool reads_failing;        /* the watcher thread's last read for waiters failed (logged once) */
    struct klist known[CHAT_HOLD_BUCKETS];   /* rooms' latest ids, by room_bucket */
    size_t nknown;
    int epfd;                  /* the parked requests' sockets, by descriptor number */
    /*
     * The waiter parked on each descriptor, while it is in the table or the
     * check list (set and read under mu; cleared without it when the
     * watcher ends the request, before the connection can carry another).
     */
    _Atomic(struct waiter *) *by_fd;
    /*
     * The connection registered in the set on each descriptor (its id, 0
     * for none known), and whether its end was reported while nothing was
     * parked on it. Under mu. A registration lasts as long as its
     * connection: the set drops it when the connection is closed.
     */
    struct registered { uint64_t conn; bool ended; } *reg;
    int nfd;
    atomic_bool stopping;
    struct store *store;       /* the watcher thread's reads */
    struct watch *watch;
};

void (*hold_test_hook)(struct hold *h);

static unsigned room_bucket(const char *room, size_t len)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)room[i]) * 16777619u;
    return h % CHAT_HOLD_BUCKETS;
}

static bool same_room(const struct waiter *w, const char *room, size_t len)
{
    return w->room_len == len && memcmp(w->room, room, len) == 0;
}

/* Moves every waiter of from (of one room, unless room is NULL) to the head of to. */
static void move_waiters(struct wlist *from, const char *room, size_t len, struct wlist *to)
{
    struct waiter *w, *next;

    for (w = LIST_FIRST(from); w; w = next) {
        next = LIST_NEXT(w, link);
        if (room && !same_room(w, room, len))
            continue;
        LIST_REMOVE(w, link);
        LIST_INSERT_HEAD(to, w, link);
    }
}

static size_t wlist_len(const struct wlist *l)
{
    size_t n = 0;
    const struct waiter *w;

    LIST_FOREACH(w, l, link)
        n++;
    return n;
}

/* Called with mu held: count went down by n; stop listening when none is left. */
static void uncount(struct hold *h, size_t n)
{
    if (n && atomic_fetch_sub(&h->count, n) == n)
        watch_listen(h->watch, false);
}

/*
 * Ends a waiter's request, answering body when given (without one, its
 * client went away: the connection is closed); frees the waiter. The
 * answer goes out in one write, its body shared by every waiter of the
 * same cursor. The socket stays in the set of parked ones, where only its
 * end is reported: a connection nginx keeps may be parked again with its
 * next request.
 */
static void waiter_finish(struct hold *h, struct waiter *w, const char *body, size_t len)
{
    bool written = false;

    atomic_store(&h->by_fd[w->fd], NULL);
    if (body)
        written = reply_raw(w->fd, w->request_id, 200, NULL, body, len) == 0;
    reply_release(w->fd, w->keep && written);
    free(w);
}

/* Answers a waiter with the refusal f (503 with Retry-After: the database is away), as a worker would. */
static void waiter_refuse(struct hold *h, struct waiter *w, const struct chat_fail *f)
{
    static const char fallback[] = "{\"error\":\"out of memory\"}";
    size_t len;
    char *body = render_error(f->msg, &len);
    int status = body ? chat_err_status(f->code) : 503;
    bool written;

    atomic_store(&h->by_fd[w->fd], NULL);
    metrics_request(MR_GET, status);
    written = reply_raw(w->fd, w->request_id, status, status == 503 ? "Retry-After: 1\r\n" : NULL,
                        body ? body : fallback, body ? len : sizeof fallback - 1) == 0;
    reply_release(w->fd, w->keep && written);
    free(body);
    free(w);
}

/* Answers a waiter with no messages, as when its wait expires. */
static void waiter_expire(struct hold *h, struct waiter *w)
{
    struct store_page empty = { .max_index = w->index };
    size_t len;
    char *body;

    /* (No watcher once hold_stop stopped it: shutdown answers as an expired wait.) */
    if (h->watch && watch_failing(h->watch)) {
        struct chat_fail f;
        chat_fail(&f, CHAT_EUNAVAIL, "database unavailable, try again");
        waiter_refuse(h, w, &f);
        return;
    }
    body = render_page(&empty, &len);
    metrics_request(MR_GET, 200);
    waiter_finish(h, w, body, body ? len : 0);
    free(body);
}

static struct known *known_find(struct hold *h, unsigned bucket, const char *room, size_t len)
{
    struct known *k;

    LIST_FOREACH(k, &h->known[bucket], link)
        if (k->room_len == len && memcmp(k->room, room, len) == 0)
            return k;
    return NULL;
}

/* Forgets every room's latest id (rows were skipped unread, or ids went back). Under mu. */
static void known_clear(struct hold *h)
{
    for (unsigned b = 0; b < CHAT_HOLD_BUCKETS; b++) {
        struct known *k;
        while ((k = LIST_FIRST(&h->known[b]))) {
            LIST_REMOVE(k, link);
            free(k);
        }
    }
    h->nknown = 0;
}

/* A row handed over: the latest id of its room so far. Under mu. */
static void known_note(struct hold *h, const struct store_msg *m)
{
    unsigned b;
    struct known *k;

    if (m->room_len > CHAT_NAME_MAX)
        return;
    b = room_bucket(m->room, m->room_len);
    if ((k = known_find(h, b, m->room, m->room_len))) {
        if (m->id > k->id)
            k->id = m->id;
        return;
    }
    if (h->nknown >= CHAT_HOLD_ROOMS_KNOWN)
        known_clear(h);            /* many rooms: start again from the active ones */
    if (!(k = malloc(sizeof *k)))
        return;                    /* unknown: its requests read */
    k->id = m->id;
    k->room_len = m->room_len;
    memcpy(k->room, m->room, m->room_len);
    LIST_INSERT_HEAD(&h->known[b], k, link);
    h->nknown++;
}

/*
 * Has the set report the end of connection conn on fd, where a waiter is
 * being parked. Only the end is reported (not its data: a kept connection
 * carries the next request after the answer), once (edge triggered). A
 * connection stays registered after its answer, so one parked again is
 * left as it is, unless its end came meanwhile: then, as for a connection
 * of unknown id, the registration is made again (EPOLL_CTL_MOD reports an
 * end that came before it), or added for a new connection. Under mu.
 * Returns 0, or -1 with errno set.
 */
static int watch_end(struct hold *h, int fd, uint64_t conn)
{
    struct epoll_event ev = { .events = EPOLLRDHUP | EPOLLET, .data.u64 = (uint64_t)fd };
    struct registered *r = &h->reg[fd];

    if (conn && r->conn == conn && !r->ended)
        return 0;
    if (epoll_ctl(h->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 &&
        (errno != ENOENT || epoll_ctl(h->epfd, EPOLL_CTL_ADD, fd, &ev) < 0))
        return -1;
    r->conn = conn;
    r->ended = false;
    return 0;
}

/*
 * Parks req (see hold_park). With known set, it was not read: it is parked
 * when the room's latest id among the rows handed over is g->index, as if
 * read at `dispatched`, or put in the check list when that id is beyond
 * g->index (and the hold is not full); otherwise returns 1 and parks
 * nothing.
 */
static int park(struct hold *h, FCGX_Request *req, uint64_t conn, const struct get_args *g,
                int64_t seen_id, bool known, struct chat_fail *f)
{
    struct waiter *w;
    bool wake = false;
    int fd = req->ipcFd;

    if (atomic_load(&h->stopping))
        return chat_fail(f, CHAT_EUNAVAIL, "server is shutting down");
    if (fd < 0 || fd >= h->nfd)
        return chat_fail(f, CHAT_EUNAVAIL, "cannot watch the request: descriptor %d beyond the limit", fd);
    if (!(w = calloc(1, sizeof *w)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    w->fd = fd;
    w->request_id = req->requestId;
    /* As reply_done decides: the body was read to its end, nothing failed. */
    w->keep = req->keepConnection && req->in && FCGX_HasSeenEOF(req->in) == EOF &&
              FCGX_GetError(req->in) == 0;
    w->index = g->index;
    w->limit = g->limit;
    w->tail = g->tail;
    w->deadline = util_now_ms() + (int64_t)g->wait * 1000;
    w->room_len = g->room_len;
    memcpy(w->room, g->room, g->room_len);
    w->bucket = room_bucket(g->room, g->room_len);

    pthread_mutex_lock(&h->mu);
    if (known) {
        struct known *k = known_find(h, w->bucket, w->room, w->room_len);
        /*
         * Behind the room's latest id: the watcher reads it, once for every
         * request at the same cursor (a fan-out's re-polls come together).
         * Never refused for a full hold: read here instead.
         */
        bool behind = k && k->id > w->index && atomic_load(&h->count) < h->max_held;
        if (!behind && (!k || k->id != w->index)) {
            pthread_mutex_unlock(&h->mu);
            free(w);
            return 1;
        }
        seen_id = behind ? w->index : h->dispatched;
    }
    if (atomic_load(&h->count) >= h->max_held) {
        size_t max = h->max_held;
        pthread_mutex_unlock(&h->mu);
        free(w);
        return chat_fail(f, CHAT_EUNAVAIL, "too many waiting requests (%zu held), retry", max);
    }
    /* Under mu: an end reported at once is read by on_turn with by_fd set. */
    atomic_store(&h->by_fd[fd], w);
    if (watch_end(h, fd, conn) < 0) {
        int e = errno;
        atomic_store(&h->by_fd[fd], NULL);
        pthread_mutex_unlock(&h->mu);
        free(w);
        return chat_fail(f, CHAT_EUNAVAIL, "cannot watch the request: %s", strerror(e));
    }
    if (seen_id < h->dispatched) {
        LIST_INSERT_HEAD(&h->check, w, link);
        /* One kick until the watcher takes the list: it takes all of it. */
        wake = !h->check_kicked;
        h->check_kicked = true;
    } else {
        LIST_INSERT_HEAD(&h->buckets[w->bucket], w, link);
    }
    /* The watcher times its sleep by the earliest deadline. */
    if (w->deadline < h->next_deadline) {
        h->next_deadline = w->deadline;
        wake = true;
    }
    if (atomic_fetch_add(&h->count, 1) == 0)
        watch_listen(h->watch, true);     /* probes at once */
    else if (wake)
        watch_nudge(h->watch);     /* the check list, or an earlier deadline */
    pthread_mutex_unlock(&h->mu);
    /*
     * The waiter holds all the answer needs: the request's buffers (8 KiB
     * each way) and parameters are freed now, not after the wait. Its
     * connection stays open (the waiter's now).
     */
    FCGX_Free(req, 0);
    free(req);
    return 0;
}

int hold_park(struct hold *h, FCGX_Request *req, uint64_t conn, const struct get_args *g,
              int64_t seen_id, struct chat_fail *f)
{
    return park(h, req, conn, g, seen_id, false, f);
}

int hold_try_park(struct hold *h, FCGX_Request *req, uint64_t conn, const struct get_args *g,
                  struct chat_fail *f)
{
    /* While the watcher's reads fail the worker reads: a 503 now, not after the wait. */
    if (g->tail > 0 || g->wait <= 0 || watch_failing(h->watch))
        return 1;
    return park(h, req, conn, g, 0, true, f);
}

void hold_kick(struct hold *h)
{
    /*
     * With nothing parked there is nobody to answer. A request parked after
     * this check turns listening on, which probes.
     */
    if (hold_count(h) > 0)
        watch_kick(h->watch);
}

int64_t hold_probes(struct hold *h)
{
    return watch_probes(h->watch);
}

size_t hold_count(struct hold *h)
{
    return atomic_load(&h->count);
}

/*
 * Answers the waiters of *l, which the caller took out of the table: one
 * read and one rendering per distinct (room, cursor, limit, tail); waiters
 * whose cursor has nothing new yet go back into the table, those whose read
 * failed are answered with the refusal a worker would give. Watcher thread.
 */
static void dispatch(struct hold *h, struct wlist *l)
{
    struct wlist again = LIST_HEAD_INITIALIZER(again), failed = LIST_HEAD_INITIALIZER(failed),
                 done = LIST_HEAD_INITIALIZER(done);
    struct waiter *w, *next;

    while (!LIST_EMPTY(l)) {
        size_t answered = 0;
        /* The group's key, copied: the first waiter is freed with its group. */
        struct waiter key = *LIST_FIRST(l);
        struct store_page page;
        struct chat_fail f;
        char *body = NULL;
        size_t len = 0;
        int64_t stored_ts = 0;
        bool answer = false, read_failed = false;

        if (store_fetch(h->store, key.room, key.room_len, key.index, key.limit, key.tail,
                        &page, &f) < 0) {
            /* Once for a run of failures: while the database is away every read fails. */
            if (!h->reads_failing)
                log_warn("a held request's read (room %s) failed: %s", key.room, f.msg);
            h->reads_failing = read_failed = true;
        } else {
            if (h->reads_failing)
                log_info("held requests' reads work again");
            h->reads_failing = false;
            /* Rows, or a cursor ahead of the room (ids went back): answered, as api_get does. */
            if (!hold_page_waits(&page, key.index, key.tail) && !(body = render_page(&page, &len))) {
                chat_fail(&f, CHAT_EUNAVAIL, "out of memory");
                read_failed = true;
            }
            answer = body != NULL;
            if (answer && page.n > 0)
                stored_ts = page.msgs[page.n - 1].ts;
            store_page_free(&page);
        }
        for (w = LIST_FIRST(l); w; w = next) {
            next = LIST_NEXT(w, link);
            if (!same_room(w, key.room, key.room_len) || w->index != key.index ||
                w->limit != key.limit || w->tail != key.tail)
                continue;
            LIST_REMOVE(w, link);
            LIST_INSERT_HEAD(answer ? &done : read_failed ? &failed : &again, w, link);
            answered += answer || read_failed;
        }
        if (answered) {
            /* Counted out before the answers go: a client that has its answer sees it gone. */
            pthread_mutex_lock(&h->mu);
            uncount(h, answered);
            pthread_mutex_unlock(&h->mu);
            answered = 0;
        }
        while ((w = LIST_FIRST(&done))) {
            LIST_REMOVE(w, link);
            metrics_request(MR_GET, 200);
            if (stored_ts)
                metrics_wakeup(util_wall_ms() - stored_ts);
            waiter_finish(h, w, body, len);
        }
        while ((w = LIST_FIRST(&failed))) {
            LIST_REMOVE(w, link);
            waiter_refuse(h, w, &f);
        }
        free(body);
    }
    if (hold_test_hook && !LIST_EMPTY(&again))
        hold_test_hook(h);
    pthread_mutex_lock(&h->mu);
    /* Back in the table (still in the epoll set). */
    for (w = LIST_FIRST(&again); w; w = next) {
        next = LIST_NEXT(w, link);
        LIST_REMOVE(w, link);
        LIST_INSERT_HEAD(&h->buckets[w->bucket], w, link);
        /* It was out of the table when the next deadline was last reckoned. */
        if (w->deadline < h->next_deadline)
            h->next_deadline = w->deadline;
    }
    pthread_mutex_unlock(&h->mu);
}

/* A batch of new rows: answers the waiters of the rooms they name. */
static int64_t on_rows(void *ctx, const struct store_page *rows)
{
    struct hold *h = ctx;
    struct wlist taken = LIST_HEAD_INITIALIZER(taken);

    pthread_mutex_lock(&h->mu);
    /* Rows skipped unread, or ids that went back (a replaced database): latest ids unknown. */
    if (rows->n == 0 || rows->max_index < h->dispatched)
        known_clear(h);
    h->dispatched = rows->max_index;
    if (rows->n == 0) {
        /* Skipped unread while nobody was counted: every waiter reads by cursor. */
        for (unsigned b = 0; b < CHAT_HOLD_BUCKETS; b++)
            move_waiters(&h->buckets[b], NULL, 0, &taken);
    }
    for (size_t i = 0; i < rows->n; i++)
        known_note(h, &rows->msgs[i]);
    for (size_t i = 0; i < rows->n; i++) {
        const struct store_msg *m = &rows->msgs[i];
        /* Rows of one room usually come together: take its waiters once. */
        if (i > 0 && m->room_len == rows->msgs[i - 1].room_len &&
            memcmp(m->room, rows->msgs[i - 1].room, m->room_len) == 0)
            continue;
        if (m->room_len <= CHAT_NAME_MAX)
            move_waiters(&h->buckets[room_bucket(m->room, m->room_len)], m->room, m->room_len, &taken);
    }
    pthread_mutex_unlock(&h->mu);
    dispatch(h, &taken);
    return rows->max_index;
}

/*
 * Takes the waiters whose deadline passed (all of them when all is set) and
 * recomputes the next deadline. Called with h->mu held.
 */
static void take_expired(struct hold *h, int64_t now, bool all, struct wlist *out)
{
    int64_t next = INT64_MAX;
    struct waiter *w, *nx;

    for (unsigned b = 0; b <= CHAT_HOLD_BUCKETS; b++) {
        struct wlist *l = b < CHAT_HOLD_BUCKETS ? &h->buckets[b] : &h->check;
        for (w = LIST_FIRST(l); w; w = nx) {
            nx = LIST_NEXT(w, link);
            if (all || w->deadline <= now) {
                LIST_REMOVE(w, link);
                LIST_INSERT_HEAD(out, w, link);
            } else if (w->deadline < next) {
                next = w->deadline;
            }
        }
    }
    h->next_deadline = next;
}

/* Answers every waiter of *l as expired; returns how many. */
static size_t expire_all(struct hold *h, struct wlist *l)
{
    size_t n = 0;
    struct waiter *w;

    while ((w = LIST_FIRST(l))) {
        LIST_REMOVE(w, link);
        waiter_expire(h, w);
        n++;
    }
    return n;
}

/*
 * After each wake-up of the watcher: releases the waiters whose client went
 * away, reads the check list by cursor, answers the expired.
 */
static int64_t on_turn(void *ctx, int64_t now)
{
    struct hold *h = ctx;
    struct wlist gone = LIST_HEAD_INITIALIZER(gone), check = LIST_HEAD_INITIALIZER(check),
                 expired = LIST_HEAD_INITIALIZER(expired);
    struct epoll_event evs[64];
    int64_t next;
    int n;

    pthread_mutex_lock(&h->mu);
    do {
        n = epoll_wait(h->epfd, evs, (int)(sizeof evs / sizeof evs[0]), 0);
        for (int i = 0; i < n; i++) {
            /*
             * The end of a connection: nginx closed it (its client left, or
             * it gave up). Every waiter is in the table or the check list
             * here (this thread is the one that takes them out); a
             * connection with none is idle between requests, and its end
             * is the workers' to see.
             */
            int fd = (int)evs[i].data.u64;
            struct waiter *w = fd >= 0 && fd < h->nfd ? atomic_load(&h->by_fd[fd]) : NULL;
            if (!w) {
                /*
                 * The end of the connection registered on fd (the set
                 * dropped any earlier one's events when it was closed):
                 * its next park registers it again, which reports it.
                 */
                if (fd >= 0 && fd < h->nfd)
                    h->reg[fd].ended = true;
                continue;
            }
            atomic_store(&h->by_fd[fd], NULL);
            LIST_REMOVE(w, link);
            LIST_INSERT_HEAD(&gone, w, link);
        }
    } while (n == (int)(sizeof evs / sizeof evs[0]));
    move_waiters(&h->check, NULL, 0, &check);
    h->check_kicked = false;
    if (now >= h->next_deadline)
        take_expired(h, now, false, &expired);
    /* Counted out before they are ended: a client that has its answer sees it gone. */
    uncount(h, wlist_len(&gone) + wlist_len(&expired));
    pthread_mutex_unlock(&h->mu);

    while (!LIST_EMPTY(&gone)) {
        struct waiter *w = LIST_FIRST(&gone);
        LIST_REMOVE(w, link);
        log_debug("client of a held request in room %s went away", w->room);
        waiter_finish(h, w, NULL, 0);
    }
    dispatch(h, &check);
    expire_all(h, &expired);
    pthread_mutex_lock(&h->mu);
    next = h->next_deadline;
    pthread_mutex_unlock(&h->mu);
    return next;
}

int hold_start(const struct hold_opts *o, struct hold **out, struct chat_fail *f)
{
    struct hold *h = calloc(1, sizeof *h);
    struct rlimit rl;
    int err;

    if (!h)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&h->mu, NULL);
    for (unsigned b = 0; b < CHAT_HOLD_BUCKETS; b++) {
        LIST_INIT(&h->buckets[b]);
        LIST_INIT(&h->known[b]);
    }
    LIST_INIT(&h->check);
    h->max_held = o->max_held;
    h->next_deadline = INT64_MAX;
    /* One entry a descriptor the process may open: untouched pages of a large calloc cost nothing. */
    h->nfd = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (1 << 22) ? (int)rl.rlim_cur : (1 << 20);
    if (!(h->by_fd = calloc((size_t)h->nfd, sizeof *h->by_fd)) ||
        !(h->reg = calloc((size_t)h->nfd, sizeof *h->reg))) {
        pthread_mutex_destroy(&h->mu);
        free(h->by_fd);
        free(h);
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    }
    if ((h->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "epoll: %s", strerror(errno));
        goto err;
    }
    if ((err = store_open(&o->store, &h->store, f)) < 0)
        goto err;
    /* Sets dispatched to where the watcher starts, before any park. */
    err = watch_start(&(struct watch_opts){ .store = o->store, .probe_ms = o->probe_ms,
                                            .on_rows = on_rows, .on_turn = on_turn,
                                            .consumer_fd = h->epfd, .ctx = h }, &h->watch, f);
    if (err < 0)
        goto err;
    *out = h;
    return 0;
err:
    store_close(h->store);
    if (h->epfd >= 0)
        close(h->epfd);
    pthread_mutex_destroy(&h->mu);
    free(h->by_fd);
    free(h->reg);
    free(h);
    return err;
}

void hold_stop(struct hold *h)
{
    struct wlist all = LIST_HEAD_INITIALIZER(all);

    if (!h)
        return;
    atomic_store(&h->stopping, true);
    watch_stop(h->watch);
    h->watch = NULL;
    pthread_mutex_lock(&h->mu);
    take_expired(h, 0, true, &all);
    pthread_mutex_unlock(&h->mu);
    expire_all(h, &all);
    store_close(h->store);
    close(h->epfd);
    known_clear(h);
    pthread_mutex_destroy(&h->mu);
    free(h->by_fd);
    free(h->reg);
    free(h);
}
