/*
 * hold.c - parked long-polls and the watcher thread that answers them.
 *
 * Locking: h->mu guards the waiter table, the count and the watcher's
 * cursor (last_id). The watcher reads the changed rooms and takes their
 * waiters out of the table under the lock, then reads, renders and writes
 * the answers outside it, so parking never waits for a fan-out.
 *
 * The cursor's promise: for every waiter the hold owns, any row of its room
 * after its index has an id above last_id, or the waiter is in flight (taken
 * out by the watcher, whose read comes after every row up to last_id). So
 * the cursor may move back at any time, but forward only past rows every
 * waiter has been read for: a probe moves it to what it took the waiters
 * for, a read that fails moves it back to where that probe started, and a
 * park moves it forward only when that waiter is the only one anywhere,
 * in the table or in flight (count counts both).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "hold.h"
#include "chat_limits.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "render.h"
#include "reply.h"
#include "util.h"

#define BUCKETS 256            /* rooms hash into this many waiter lists */
#define WRITE_TIMEOUT_MS 1000  /* a parked answer's write gives up after this */

struct waiter {
    struct waiter *prev, *next;
    FCGX_Request *req;
    int64_t index;
    int64_t deadline;          /* util_now_ms() at which the wait expires */
    int limit, tail;
    unsigned bucket;
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
};

struct hold {
    pthread_mutex_t mu;
    struct waiter *buckets[BUCKETS];
    atomic_size_t count;       /* waiters in the table or in flight; changed under mu, read anywhere */
    size_t max_held;
    int64_t last_id;           /* rows up to this id were dispatched */
    bool rescan;               /* last_id moved back: re-read the changes */
    int64_t next_deadline;     /* no waiter expires before this */
    int64_t data_version;
    atomic_llong probes;       /* change probes made, for /healthz */
    int epfd, kickfd;
    int probe_ms;
    struct notify notify;      /* writes by any process; watcher thread only */
    bool notify_armed;         /* notify.fd is in the epoll set */
    int recheck_ms;            /* probe again this soon after a write, or -1 */
    bool reads_failing;        /* the last fan-out had a failed read (logged once); watcher only */
    atomic_bool stopping;
    pthread_t thread;
    struct store *store;
};

/* A list of waiters taken out of the table, to be answered. */
struct wlist {
    struct waiter *head;
    int64_t from;              /* dispatch: last_id before the probe that took them */
};

void (*hold_test_hook)(struct hold *h);

static unsigned room_bucket(const char *room, size_t len)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)room[i]) * 16777619u;
    return h % BUCKETS;
}

static void table_insert(struct hold *h, struct waiter *w)
{
    struct waiter **head = &h->buckets[w->bucket];
    w->prev = NULL;
    w->next = *head;
    if (*head)
        (*head)->prev = w;
    *head = w;
}

/*
 * Takes w out of the table. h->count is the caller's: a waiter that may be
 * put back stays counted until it is ended. Its socket stays in the epoll
 * set: every waiter taken out is ended (its close() leaves the set) or put
 * back before the watcher's next epoll_wait(), and both happen on the
 * watcher thread (or after it stopped), so no event can name a waiter
 * outside the table.
 */
static void table_remove(struct hold *h, struct waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        h->buckets[w->bucket] = w->next;
    if (w->next)
        w->next->prev = w->prev;
}

static void wlist_push(struct wlist *l, struct waiter *w)
{
    w->next = l->head;
    l->head = w;
}

/* Ends a waiter's request, answering body when given; frees the waiter. */
static void waiter_finish(struct waiter *w, const char *body, size_t len)
{
    if (body)
        reply_json(w->req, 200, NULL, body, len);
    reply_done(w->req);
    free(w);
}

/* Answers a waiter with no messages, as when its wait expires. */
static void waiter_expire(struct waiter *w)
{
    struct store_page empty = { .max_index = w->index };
    size_t len;
    char *body = render_page(&empty, &len);

    metrics_request(MR_GET, 200);
    waiter_finish(w, body, body ? len : 0);
    free(body);
}

/* Wakes the watcher from its epoll_wait(). */
static void wake_watcher(struct hold *h)
{
    uint64_t one = 1;
    if (write(h->kickfd, &one, sizeof one) < 0) {
        /* the counter is saturated: the watcher is awake anyway */
    }
}

int hold_park(struct hold *h, FCGX_Request *req, const struct get_args *g, int64_t seen_id,
              struct chat_fail *f)
{
    struct waiter *w;
    bool wake = false;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP };
    struct timeval tv = { .tv_sec = WRITE_TIMEOUT_MS / 1000, .tv_usec = WRITE_TIMEOUT_MS % 1000 * 1000 };

    if (atomic_load(&h->stopping))
        return chat_fail(f, CHAT_EUNAVAIL, "server is shutting down");
    if (!(w = calloc(1, sizeof *w)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    w->req = req;
    w->index = g->index;
    w->limit = g->limit;
    w->tail = g->tail;
    w->deadline = util_now_ms() + (int64_t)g->wait * 1000;
    w->room_len = g->room_len;
    memcpy(w->room, g->room, g->room_len);
    w->bucket = room_bucket(g->room, g->room_len);
    ev.data.ptr = w;
    /* A stalled nginx must not stall the watcher's fan-out. */
    setsockopt(req->ipcFd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    pthread_mutex_lock(&h->mu);
    if (h->count >= h->max_held) {
        pthread_mutex_unlock(&h->mu);
        free(w);
        return chat_fail(f, CHAT_EUNAVAIL, "too many waiting requests (%zu held), retry", h->max_held);
    }
    if (epoll_ctl(h->epfd, EPOLL_CTL_ADD, req->ipcFd, &ev) < 0) {
        pthread_mutex_unlock(&h->mu);
        free(w);
        return chat_fail(f, CHAT_EUNAVAIL, "cannot watch the request: %s", strerror(errno));
    }
    table_insert(h, w);
    h->count++;
    /*
     * Rows after seen_id may have been dispatched before this waiter was in
     * the table: move the watcher's cursor back so it reads them again. When
     * nothing else waits, in the table or in flight, the watcher has not
     * probed for a while: start it from this snapshot rather than scan all
     * it missed. With any other waiter held, moving forward could skip a row
     * committed after the watcher's read for it.
     */
    if (seen_id < h->last_id || h->count == 1) {
        h->last_id = seen_id;
        h->rescan = wake = true;
    }
    /* The watcher times its sleep by the earliest deadline. */
    if (w->deadline < h->next_deadline) {
        h->next_deadline = w->deadline;
        wake = true;
    }
    pthread_mutex_unlock(&h->mu);
    if (wake)
        wake_watcher(h);
    return 0;
}

void hold_kick(struct hold *h)
{
    /*
     * With nothing parked there is nobody to answer. A request parked after
     * this check wakes the watcher itself, which then probes.
     */
    if (hold_count(h) > 0)
        wake_watcher(h);
}

int64_t hold_probes(struct hold *h)
{
    return atomic_load(&h->probes);
}

size_t hold_count(struct hold *h)
{
    return atomic_load(&h->count);
}

/* Collects the rooms named by store_rooms_after() (at most a bounded set). */
struct rooms {
    size_t n;
    char names[64][CHAT_NAME_MAX + 1];
    size_t lens[64];
    bool overflow;           /* more rooms changed than fit: take every waiter */
};

static void rooms_add(void *ctx, const char *room, size_t len)
{
    struct rooms *r = ctx;
    if (len > CHAT_NAME_MAX)
        return;
    if (r->n == sizeof r->lens / sizeof r->lens[0]) {
        r->overflow = true;
        return;
    }
    memcpy(r->names[r->n], room, len);
    r->names[r->n][len] = '\0';
    r->lens[r->n++] = len;
}

/* Takes the waiters of a room (or all, when room is NULL) out of the table, in flight. */
static void take_room(struct hold *h, const char *room, size_t len, struct wlist *out)
{
    for (unsigned b = 0; b < BUCKETS; b++) {
        if (room && b != room_bucket(room, len))
            continue;
        for (struct waiter *w = h->buckets[b], *next; w; w = next) {
            next = w->next;
            if (room && (w->room_len != len || memcmp(w->room, room, len) != 0))
                continue;
            table_remove(h, w);
            wlist_push(out, w);
        }
    }
}

/*
 * Probes for new rows; when there are, takes the waiters of the rooms that
 * changed into *out (out->from is the cursor they were taken from) and moves
 * the cursor past those rows. Returns false when none came. Called with
 * h->mu held.
 */
static bool probe_changes(struct hold *h, struct wlist *out)
{
    struct rooms changed = { 0 };
    int64_t version, max_id;

    atomic_fetch_add(&h->probes, 1);
    if (store_data_version(h->store, &version) < 0)
        return true;
    if (version == h->data_version && !h->rescan)
        return false;
    /* A failed read below leaves rescan set, so the next probe reads again. */
    h->rescan = true;
    if (store_max_id(h->store, &max_id) < 0)
        return true;
    if (max_id > h->last_id &&
        store_rooms_after(h->store, h->last_id, rooms_add, &changed) < 0)
        return true;
    h->data_version = version;
    h->rescan = false;
    out->from = h->last_id;
    h->last_id = max_id;
    if (changed.overflow) {
        take_room(h, NULL, 0, out);
        return true;
    }
    for (size_t i = 0; i < changed.n; i++)
        take_room(h, changed.names[i], changed.lens[i], out);
    return true;
}

/*
 * Answers the waiters of *l: one read and one rendering per distinct
 * (room, cursor, limit, tail); waiters whose cursor has nothing new yet go
 * back into the table. A read or rendering that fails puts its waiters back
 * too, and moves the cursor back to l->from, so the next probe takes them
 * again for the rows they were taken for.
 */
static void dispatch(struct hold *h, struct wlist *l)
{
    struct wlist again = { 0 };
    size_t answered = 0;
    bool failed = false;

    if (!l->head)
        return;

    while (l->head) {
        /* The group's key, copied: the first waiter is freed with its group. */
        struct waiter key = *l->head, **pp;
        struct store_page page;
        struct chat_fail f;
        char *body = NULL;
        size_t len = 0;
        int64_t stored_ts = 0;
        bool answer;

        if (store_fetch(h->store, key.room, key.room_len, key.index, key.limit, key.tail,
                        &page, &f) < 0) {
            if (!h->reads_failing)
                log_warn("watcher read of room %s failed, retrying: %s", key.room, f.msg);
            answer = false;
            failed = true;
        } else {
            answer = page.n > 0;
            if (answer && !(body = render_page(&page, &len))) {
                if (!h->reads_failing)
                    log_warn("watcher answer for room %s: out of memory, retrying", key.room);
                answer = false;
                failed = true;
            }
            if (answer)
                stored_ts = page.msgs[page.n - 1].ts;
            store_page_free(&page);
        }
        for (pp = &l->head; *pp; ) {
            struct waiter *w = *pp;
            if (w->room_len == key.room_len && memcmp(w->room, key.room, w->room_len) == 0 &&
                w->index == key.index && w->limit == key.limit && w->tail == key.tail) {
                *pp = w->next;
                if (answer) {
                    metrics_request(MR_GET, 200);
                    metrics_wakeup(util_wall_ms() - stored_ts);
                    waiter_finish(w, body, len);
                    answered++;
                }
                else
                    wlist_push(&again, w);
            } else {
                pp = &w->next;
            }
        }
        free(body);
    }
    if (h->reads_failing && !failed)
        log_info("watcher reads work again");
    h->reads_failing = failed;
    if (again.head && hold_test_hook)
        hold_test_hook(h);
    pthread_mutex_lock(&h->mu);
    while (again.head) {
        struct waiter *w = again.head;
        again.head = w->next;
        table_insert(h, w);   /* still in the epoll set, still counted */
        if (w->deadline < h->next_deadline)
            h->next_deadline = w->deadline;
    }
    h->count -= answered;
    if (failed) {
        if (l->from < h->last_id)
            h->last_id = l->from;
        h->rescan = true;
    }
    pthread_mutex_unlock(&h->mu);
}

/*
 * Takes the waiters whose deadline passed (all of them when all is set) and
 * recomputes the next deadline. Called with h->mu held.
 */
static void take_expired(struct hold *h, int64_t now, bool all, struct wlist *out)
{
    int64_t next = INT64_MAX;

    for (unsigned b = 0; b < BUCKETS; b++) {
        for (struct waiter *w = h->buckets[b], *nx; w; w = nx) {
            nx = w->next;
            if (all || w->deadline <= now) {
                table_remove(h, w);
                h->count--;
                wlist_push(out, w);
            } else if (w->deadline < next) {
                next = w->deadline;
            }
        }
    }
    h->next_deadline = next;
}

/*
 * Puts the write notice in the epoll set while requests are parked, and
 * takes it out while none are, so that other writers' commits do not wake
 * an idle watcher. Watcher thread only.
 */
static void arm_notify(struct hold *h, bool on)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &h->notify };

    if (h->notify.fd < 0 || on == h->notify_armed)
        return;
    if (on) {
        notify_drain(&h->notify);   /* what was written meanwhile is probed anyway */
        h->notify_armed = epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->notify.fd, &ev) == 0;
    } else {
        epoll_ctl(h->epfd, EPOLL_CTL_DEL, h->notify.fd, NULL);
        h->notify_armed = false;
    }
}

static void *watcher_main(void *arg)
{
    struct hold *h = arg;
    struct epoll_event evs[64];

    while (!atomic_load(&h->stopping)) {
        struct wlist ready = { 0 }, expired = { 0 }, gone = { 0 };
        int64_t now = util_now_ms();
        int timeout = 1000, n;
        bool written = false;

        pthread_mutex_lock(&h->mu);
        if (h->count > 0)
            timeout = h->recheck_ms >= 0 && h->recheck_ms < h->probe_ms ? h->recheck_ms : h->probe_ms;
        if (h->next_deadline - now < timeout)
            timeout = h->next_deadline <= now ? 0 : (int)(h->next_deadline - now);
        arm_notify(h, h->count > 0);
        pthread_mutex_unlock(&h->mu);
        n = epoll_wait(h->epfd, evs, (int)(sizeof evs / sizeof evs[0]), timeout);
        pthread_mutex_lock(&h->mu);
        for (int i = 0; i < n; i++) {
            struct waiter *w = evs[i].data.ptr;
            if (!w) {
                uint64_t v;
                if (read(h->kickfd, &v, sizeof v) < 0) { /* nothing to drain */ }
                continue;
            }
            if (evs[i].data.ptr == &h->notify) {
                written = notify_drain(&h->notify);
                continue;
            }
            /* nginx sends nothing after the request: any event means it closed. */
            table_remove(h, w);
            h->count--;
            wlist_push(&gone, w);
        }
        if (h->count > 0) {
            /* A write seen before its commit is visible: look again shortly. */
            bool changed = probe_changes(h, &ready);
            h->recheck_ms = notify_recheck_ms(&h->notify, written, changed);
        }
        now = util_now_ms();
        if (now >= h->next_deadline)
            take_expired(h, now, false, &expired);
        pthread_mutex_unlock(&h->mu);

        while (gone.head) {
            struct waiter *w = gone.head;
            gone.head = w->next;
            log_debug("client of a held request in room %s went away", w->room);
            waiter_finish(w, NULL, 0);
        }
        dispatch(h, &ready);
        while (expired.head) {
            struct waiter *w = expired.head;
            expired.head = w->next;
            waiter_expire(w);
        }
    }
    return NULL;
}

int hold_start(const struct hold_opts *o, struct hold **out, struct chat_fail *f)
{
    struct hold *h = calloc(1, sizeof *h);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    int err;

    if (!h)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&h->mu, NULL);
    h->max_held = o->max_held;
    h->next_deadline = INT64_MAX;
    h->probe_ms = o->probe_ms;
    h->epfd = epoll_create1(EPOLL_CLOEXEC);
    h->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->epfd < 0 || h->kickfd < 0 || epoll_ctl(h->epfd, EPOLL_CTL_ADD, h->kickfd, &ev) < 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "watcher set-up: %s", strerror(errno));
        goto err;
    }
    if ((err = store_open(&o->store, &h->store, f)) < 0)
        goto err;
    if (store_data_version(h->store, &h->data_version) < 0 ||
        store_max_id(h->store, &h->last_id) < 0) {
        err = chat_fail(f, CHAT_EUNAVAIL, "cannot read the database");
        goto err;
    }
    notify_open(&h->notify, o->store.path);
    h->recheck_ms = -1;
    if (pthread_create(&h->thread, NULL, watcher_main, h) != 0) {
        notify_close(&h->notify);
        err = chat_fail(f, CHAT_EINTERNAL, "cannot start the watcher thread");
        goto err;
    }
    *out = h;
    return 0;
err:
    store_close(h->store);
    if (h->epfd >= 0) close(h->epfd);
    if (h->kickfd >= 0) close(h->kickfd);
    pthread_mutex_destroy(&h->mu);
    free(h);
    return err;
}

void hold_stop(struct hold *h)
{
    struct wlist all = { 0 };

    if (!h)
        return;
    atomic_store(&h->stopping, true);
    wake_watcher(h);
    pthread_join(h->thread, NULL);
    pthread_mutex_lock(&h->mu);
    take_expired(h, 0, true, &all);
    pthread_mutex_unlock(&h->mu);
    while (all.head) {
        struct waiter *w = all.head;
        all.head = w->next;
        waiter_expire(w);
    }
    store_close(h->store);
    notify_close(&h->notify);
    close(h->epfd);
    close(h->kickfd);
    pthread_mutex_destroy(&h->mu);
    free(h);
}
