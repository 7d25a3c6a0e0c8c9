/*
 * feed.c - the watcher thread of chat-ws.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "feed.h"
#include "log.h"
#include "notify.h"
#include "render.h"

#define BATCH 500               /* rows read per query */

struct feed {
    pthread_mutex_t mu;
    struct feed_msg **queue;    /* guarded by mu */
    size_t n, cap;
    int kickfd;
    int probe_ms;
    struct notify notify;       /* writes by any process; feed thread only */
    atomic_bool stopping, listening;
    void (*wake)(void *ctx);
    void *wake_ctx;
    struct store *store;
    int64_t last_id, data_version;
    bool retry;                 /* the last probe failed part-way: probe again */
    pthread_t thread;
};

struct feed_msg *feed_msg_new(const char *json, size_t len)
{
    struct feed_msg *m = malloc(sizeof *m + FEED_HEADROOM + len);

    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->len = len;
    memcpy(m->buf + FEED_HEADROOM, json, len);
    return m;
}

void feed_msg_unref(struct feed_msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

static bool enqueue(struct feed *fd, struct feed_msg *m)
{
    bool ok = true;

    pthread_mutex_lock(&fd->mu);
    if (fd->n == fd->cap) {
        size_t ncap = fd->cap ? fd->cap * 2 : 256;
        struct feed_msg **nq = realloc(fd->queue, ncap * sizeof *nq);
        if (nq) {
            fd->queue = nq;
            fd->cap = ncap;
        } else {
            ok = false;
        }
    }
    if (ok)
        fd->queue[fd->n++] = m;
    pthread_mutex_unlock(&fd->mu);
    return ok;
}

/*
 * Reads every row after last_id, renders each once and queues it. Returns
 * false when a read failed or memory ran out: the caller probes again.
 */
static bool read_new_rows(struct feed *fd)
{
    struct store_page page;
    struct chat_fail f;
    bool queued = false, ok = true;

    do {
        if (store_since(fd->store, fd->last_id, BATCH, &page, &f) < 0) {
            log_warn("feed read failed: %s", f.msg);
            ok = false;
            break;
        }
        for (size_t i = 0; i < page.n; i++) {
            const struct store_msg *sm = &page.msgs[i];
            size_t len;
            char *json;
            struct feed_msg *m;

            if (sm->room_len > CHAT_NAME_MAX) {
                /* No client can be in such a room (a row written by hand). */
                fd->last_id = sm->id;
                continue;
            }
            json = render_message(sm, &len);
            m = json ? feed_msg_new(json, len) : NULL;
            free(json);
            if (m) {
                /* Complete before the loop can see it. */
                m->id = sm->id;
                m->room_len = sm->room_len;
                memcpy(m->room, sm->room, sm->room_len + 1);
            }
            if (!m || !enqueue(fd, m)) {
                feed_msg_unref(m);
                ok = false;
                break;
            }
            fd->last_id = sm->id;
            queued = true;
        }
        store_page_free(&page);
    } while (ok && page.more && !atomic_load(&fd->stopping));
    if (queued)
        fd->wake(fd->wake_ctx);
    return ok;
}

static void *feed_main(void *arg)
{
    struct feed *fd = arg;
    struct pollfd pfd[2] = { { .fd = fd->kickfd, .events = POLLIN },
                             { .fd = fd->notify.fd, .events = POLLIN } };
    int recheck_ms = -1;
    bool armed = false;

    while (!atomic_load(&fd->stopping)) {
        int64_t version, max_id;
        bool listening = atomic_load(&fd->listening), written = false;
        int timeout = !listening ? 1000 : recheck_ms >= 0 && recheck_ms < fd->probe_ms ? recheck_ms
                                                                                       : fd->probe_ms;
        /* Other writers' commits wake the feed only while anyone listens. */
        nfds_t nfds = listening && fd->notify.fd >= 0 ? 2 : 1;

        if (nfds == 2 && !armed)
            notify_drain(&fd->notify);   /* writes from before are probed anyway */
        armed = nfds == 2;
        recheck_ms = -1;
        if (poll(pfd, nfds, timeout) > 0) {
            uint64_t v;
            if ((pfd[0].revents & POLLIN) && read(fd->kickfd, &v, sizeof v) < 0) { /* drained */ }
            if (nfds == 2 && (pfd[1].revents & POLLIN))
                written = notify_drain(&fd->notify);
        }
        if (!atomic_load(&fd->listening)) {
            /*
             * Nobody listens: skip what is stored without reading it. Safe
             * because the flag is checked after max_id is read: a connection
             * that sets it later replays from a snapshot taken later still.
             * The version is read first, so a commit between the two reads
             * only makes the next probe look again.
             */
            if (store_data_version(fd->store, &version) == 0 &&   /* before max_id: see below */
                store_max_id(fd->store, &max_id) == 0 && !atomic_load(&fd->listening)) {
                fd->last_id = max_id;
                fd->data_version = version;
                fd->retry = false;
            }
            continue;
        }
        if (store_data_version(fd->store, &version) < 0)
            continue;
        /* A write seen before its commit is visible: look again shortly. */
        recheck_ms = notify_recheck_ms(&fd->notify, written, version != fd->data_version);
        if (version == fd->data_version && !fd->retry)
            continue;
        /* The version counts as seen only once every new row is queued. */
        fd->retry = true;
        if (store_max_id(fd->store, &max_id) < 0)
            continue;
        if (max_id < fd->last_id) {
            log_warn("message ids went back from %lld to %lld: the database was replaced",
                     (long long)fd->last_id, (long long)max_id);
            fd->last_id = max_id;
        }
        if (max_id > fd->last_id && !read_new_rows(fd))
            continue;
        fd->data_version = version;
        fd->retry = false;
    }
    return NULL;
}

int feed_start(const struct feed_opts *o, struct feed **out, struct chat_fail *f)
{
    struct feed *fd = calloc(1, sizeof *fd);
    int err;

    if (!fd)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&fd->mu, NULL);
    fd->probe_ms = o->probe_ms;
    fd->wake = o->wake;
    fd->wake_ctx = o->wake_ctx;
    if ((fd->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "eventfd: %s", strerror(errno));
        goto err;
    }
    if ((err = store_open(&o->store, &fd->store, f)) < 0)
        goto err;
    if (store_data_version(fd->store, &fd->data_version) < 0 ||
        store_max_id(fd->store, &fd->last_id) < 0) {
        err = chat_fail(f, CHAT_EUNAVAIL, "cannot read the database");
        goto err;
    }
    notify_open(&fd->notify, o->store.path);
    if (pthread_create(&fd->thread, NULL, feed_main, fd) != 0) {
        notify_close(&fd->notify);
        err = chat_fail(f, CHAT_EINTERNAL, "cannot start the feed thread");
        goto err;
    }
    *out = fd;
    return 0;
err:
    store_close(fd->store);
    if (fd->kickfd >= 0)
        close(fd->kickfd);
    pthread_mutex_destroy(&fd->mu);
    free(fd);
    return err;
}

void feed_stop(struct feed *fd)
{
    if (!fd)
        return;
    atomic_store(&fd->stopping, true);
    feed_kick(fd);
    pthread_join(fd->thread, NULL);
    for (size_t i = 0; i < fd->n; i++)
        feed_msg_unref(fd->queue[i]);
    free(fd->queue);
    store_close(fd->store);
    notify_close(&fd->notify);
    close(fd->kickfd);
    pthread_mutex_destroy(&fd->mu);
    free(fd);
}

void feed_take(struct feed *fd, struct feed_msg ***out, size_t *n)
{
    pthread_mutex_lock(&fd->mu);
    *out = fd->queue;
    *n = fd->n;
    fd->queue = NULL;
    fd->n = fd->cap = 0;
    pthread_mutex_unlock(&fd->mu);
}

void feed_kick(struct feed *fd)
{
    uint64_t one = 1;
    if (write(fd->kickfd, &one, sizeof one) < 0) { /* saturated: awake anyway */ }
}

void feed_set_listening(struct feed *fd, bool listening)
{
    bool was = atomic_exchange(&fd->listening, listening);
    if (listening && !was)
        feed_kick(fd);
}
