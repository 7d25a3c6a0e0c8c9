/*
 * retain.c - the retention thread.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_limits.h"
#include "log.h"
#include "retain.h"
#include "util.h"



struct retain {
    struct retain_opts o;
    struct store *store;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stopping;
    pthread_t thread;
};

int64_t retain_parse_age(const char *s)
{
    size_t n = strlen(s);
    int64_t v, unit;

    if (n < 2)
        return -1;
    switch (s[n - 1]) {
    case 's': unit = 1000; break;
    case 'm': unit = 60 * 1000; break;
    case 'h': unit = 3600 * 1000; break;
    case 'd': unit = 86400 * 1000; break;
    default: return -1;
    }
    if (!util_parse_int(s, n - 1, 1, 100000 * 86400LL, &v))
        return -1;
    return v * unit;
}

/* Waits up to ms, or until stopped; returns true when stopping. */
static bool pause_ms(struct retain *r, int64_t ms)
{
    struct timespec until;
    bool stop;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&r->mu);
    while (!r->stopping && pthread_cond_timedwait(&r->cv, &r->mu, &until) != ETIMEDOUT)
        ;
    stop = r->stopping;
    pthread_mutex_unlock(&r->mu);
    return stop;
}

static void *retain_main(void *arg)
{
    struct retain *r = arg;
    struct chat_fail f;

    while (!pause_ms(r, (int64_t)r->o.every_s * 1000)) {
        int total = 0, n;

        if (r->o.max_age_ms > 0) {
            /* Batch after batch, with a pause between for the writers. */
            do {
                n = store_prune_age(r->store, util_wall_ms() - r->o.max_age_ms, CHAT_RETAIN_BATCH, &f);
                total += n > 0 ? n : 0;
            } while (n == CHAT_RETAIN_BATCH && !pause_ms(r, 10));
            if (n < 0)
                log_warn("retention by age: %s", f.msg);
        }
        if (r->o.per_room > 0) {
            n = store_prune_rooms(r->store, r->o.per_room, CHAT_RETAIN_BATCH, &f);
            if (n < 0)
                log_warn("retention by count: %s", f.msg);
            total += n > 0 ? n : 0;
        }
        if (total)
            log_info("retention deleted %d messages", total);
    }
    return NULL;
}

int retain_start(const struct retain_opts *o, struct retain **out, struct chat_fail *f)
{
    struct retain *r;
    int err;

    *out = NULL;
    if (o->max_age_ms <= 0 && o->per_room <= 0)
        return 0;
    if (!(r = calloc(1, sizeof *r)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    r->o = *o;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    if ((err = store_open(&o->store, &r->store, f)) < 0)
        goto err;
    if (pthread_create(&r->thread, NULL, retain_main, r) != 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "cannot start the retention thread");
        goto err;
    }
    *out = r;
    return 0;
err:
    store_close(r->store);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
    return err;
}

void retain_stop(struct retain *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    store_close(r->store);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}
