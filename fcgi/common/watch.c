/*
 * watch.c - the change watcher thread (see watch.h).
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "chat_limits.h"
#include "log.h"
#include "util.h"
#include "watch.h"

struct watch {
    struct watch_opts o;
    struct store *store;
    int changes_fd;             /* readable on a write by any process, or -1 */
    int kickfd;
    atomic_bool stopping, listening;
    atomic_bool probe_now;      /* kicked: probe on the next turn */
    atomic_bool failing;        /* the last read failed; set and cleared by the thread */
    atomic_llong probes;
    /* watcher thread only: */
    int64_t last_id;            /* rows up to this id were handed over or skipped */
    int64_t data_version;       /* of the last probe that handed everything over */
    bool retry;                 /* the last probe failed part-way: read again */
    int64_t next_probe_us;      /* while listening: probe_ms after the last probe, sooner after a write */
    int64_t next_turn;          /* on_turn's next deadline */
    pthread_t thread;
};

/*
 * A read of the watcher failed (why) or, with why NULL, all of a probe's
 * reads worked: the log tells each change, not each read, since a probe
 * of a database that is away fails every turn.
 */
static void set_failing(struct watch *w, const char *why)
{
    bool was = atomic_exchange(&w->failing, why != NULL);

    if (why && !was)
        log_warn("watcher read failed: %s (trying again on each probe)", why);
    else if (!why && was)
        log_info("watcher reads work again");
}

/*
 * Hands over the rows after last_id in batches; *none tells that there was
 * no row to hand over. Returns false when a read failed or the consumer
 * could not take a whole batch: last_id stays at the last row taken, and
 * the next probe reads again from there.
 */
static bool hand_over_rows(struct watch *w, bool *none)
{
    struct store_page page;
    struct chat_fail f;
    int64_t taken = 0;
    bool ok;

    *none = true;
    do {
        if (store_since(w->store, w->last_id, CHAT_WATCH_BATCH, &page, &f) < 0) {
            set_failing(w, f.msg);
            return false;
        }
        if (page.n > 0)
            taken = w->o.on_rows(w->o.ctx, &page);
        ok = page.n == 0 || taken == page.max_index;
        *none = *none && page.n == 0;
        if (page.n > 0 && taken > w->last_id)
            w->last_id = taken;
        store_page_free(&page);
    } while (ok && page.more && !atomic_load(&w->stopping));
    return ok;
}

/* Nobody listens: moves the cursor to the latest id without reading rows. */
static void skip_rows(struct watch *w)
{
    struct store_page skipped = { 0 };
    int64_t version, max_id;
    struct chat_fail f;

    /*
     * The version is read first, so a commit between the two reads only
     * makes the next probe look again. The flag is checked after max_id is
     * read: a consumer that starts listening later reads by cursor from a
     * snapshot taken later still.
     */
    if (store_data_version(w->store, &version, &f) < 0 || store_max_id(w->store, &max_id, &f) < 0) {
        set_failing(w, f.msg);
        w->retry = true;           /* the next probe reads in full, and can say it works again */
        return;
    }
    set_failing(w, NULL);
    if (atomic_load(&w->listening))
        return;
    w->data_version = version;
    w->retry = false;
    if (max_id == w->last_id)
        return;
    w->last_id = skipped.max_index = skipped.seen_id = max_id;
    w->o.on_rows(w->o.ctx, &skipped);
}

/* One probe while listening; written: a write woke it. */
static void probe(struct watch *w, bool written)
{
    int64_t version, max_id, now = util_now_us();
    int recheck;
    bool none;
    struct chat_fail f;

    atomic_fetch_add(&w->probes, 1);
    w->next_probe_us = now + w->o.probe_ms * 1000LL;
    if (store_data_version(w->store, &version, &f) < 0) {
        set_failing(w, f.msg);
        w->retry = true;           /* the next probe reads in full, and can say it works again */
        return;
    }
    /* A write seen before its commit is visible: look again shortly. */
    recheck = store_recheck_us(w->store, written, version != w->data_version);
    if (recheck >= 0 && recheck < w->o.probe_ms * 1000LL)
        w->next_probe_us = now + recheck;
    if (version == w->data_version && !w->retry)
        return;
    /* The version counts as seen only once every new row is handed over. */
    w->retry = true;
    /*
     * The new rows first: on a change there usually are some, and the
     * read is then the probe's only round trip (on PostgreSQL). Only when
     * there are none may the ids have gone back.
     */
    if (!hand_over_rows(w, &none))
        return;
    if (none) {
        if (store_max_id(w->store, &max_id, &f) < 0) {
            set_failing(w, f.msg);
            return;
        }
        if (max_id < w->last_id) {
            log_warn("message ids went back from %lld to %lld: the database was replaced",
                     (long long)w->last_id, (long long)max_id);
            w->last_id = max_id;
            /* As for skipped rows: the consumer's waiters read by cursor again. */
            w->o.on_rows(w->o.ctx, &(struct store_page){ .max_index = max_id, .seen_id = max_id });
        }
    }
    w->data_version = version;
    w->retry = false;
    set_failing(w, NULL);
}

/* How long the next poll may sleep. */
static struct timespec poll_timeout(struct watch *w, bool listening)
{
    int64_t now = util_now_us(), until = now + 1000000;

    if (listening && w->next_probe_us < until)
        until = w->next_probe_us;
    if (w->next_turn < until / 1000)
        until = w->next_turn * 1000;
    if (until < now)
        until = now;
    return (struct timespec){ .tv_sec = (until - now) / 1000000, .tv_nsec = (until - now) % 1000000 * 1000 };
}

static void *watch_main(void *arg)
{
    struct watch *w = arg;
    bool armed = false;

    while (!atomic_load(&w->stopping)) {
        struct pollfd pfd[3] = { { .fd = w->kickfd, .events = POLLIN },
                                 { .fd = w->o.consumer_fd, .events = POLLIN },
                                 { .fd = -1, .events = POLLIN } };
        bool listening = atomic_load(&w->listening), written = false, drained = false;

        /* Other processes' commits wake the watcher only while anyone listens. */
        if (listening && w->changes_fd >= 0) {
            /*
             * Notices that came while nobody listened: one may be newer than
             * the last probe, so probe once more at once.
             */
            if (!armed)
                drained = store_changes_drain(w->store);
            pfd[2].fd = w->changes_fd;
        }
        armed = pfd[2].fd >= 0;
        struct timespec wait = drained ? (struct timespec){ 0 } : poll_timeout(w, listening);
        if (ppoll(pfd, 3, &wait, NULL) > 0) {
            uint64_t v;
            if ((pfd[0].revents & POLLIN) && read(w->kickfd, &v, sizeof v) < 0) { /* drained */ }
            if (pfd[2].revents & POLLIN)
                written = store_changes_drain(w->store);
        }
        /*
         * A nudge only runs on_turn: the probe waits for a kick, a write, or
         * its timer (probe_ms, or the recheck after a write not yet visible).
         */
        if (!atomic_load(&w->listening)) {
            skip_rows(w);
        } else if (atomic_exchange(&w->probe_now, false) || written || drained ||
                   util_now_us() >= w->next_probe_us) {
            probe(w, written);
        }
        if (w->o.on_turn)
            w->next_turn = w->o.on_turn(w->o.ctx, util_now_ms());
    }
    return NULL;
}

int watch_start(const struct watch_opts *o, struct watch **out, struct chat_fail *f)
{
    struct watch *w = calloc(1, sizeof *w);
    int err;

    if (!w)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    w->o = *o;
    w->next_turn = INT64_MAX;
    w->changes_fd = -1;
    if ((w->kickfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "eventfd: %s", strerror(errno));
        goto err;
    }
    if ((err = store_open(&o->store, &w->store, f)) < 0 ||
        (err = store_data_version(w->store, &w->data_version, f)) < 0 ||
        (err = store_max_id(w->store, &w->last_id, f)) < 0 ||
        (err = store_watch(w->store, f)) < 0)
        goto err;
    w->changes_fd = store_changes_fd(w->store);
    /* The consumer learns where the watcher starts: rows up to here are never handed over. */
    w->o.on_rows(w->o.ctx, &(struct store_page){ .max_index = w->last_id, .seen_id = w->last_id });
    if (pthread_create(&w->thread, NULL, watch_main, w) != 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "cannot start the watcher thread");
        goto err;
    }
    *out = w;
    return 0;
err:
    store_close(w->store);
    if (w->kickfd >= 0)
        close(w->kickfd);
    free(w);
    return err;
}

void watch_stop(struct watch *w)
{
    if (!w)
        return;
    atomic_store(&w->stopping, true);
    watch_kick(w);
    pthread_join(w->thread, NULL);
    store_close(w->store);
    close(w->kickfd);
    free(w);
}

void watch_nudge(struct watch *w)
{
    uint64_t one = 1;
    if (write(w->kickfd, &one, sizeof one) < 0) { /* saturated: awake anyway */ }
}

void watch_kick(struct watch *w)
{
    atomic_store(&w->probe_now, true);
    watch_nudge(w);
}

void watch_listen(struct watch *w, bool on)
{
    bool was = atomic_exchange(&w->listening, on);
    if (on && !was)
        watch_kick(w);
}

int64_t watch_probes(struct watch *w)
{
    return atomic_load(&w->probes);
}

bool watch_failing(struct watch *w)
{
    return atomic_load(&w->failing);
}
