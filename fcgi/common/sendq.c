/*
 * sendq.c - the bounded send queue (see sendq.h).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat_limits.h"
#include "sendq.h"

int sendq_init(struct sendq *q, size_t max_queued, size_t gather, struct chat_fail *f)
{
    pthread_condattr_t ca;

    memset(q, 0, sizeof *q);
    STAILQ_INIT(&q->jobs);
    q->max_queued = max_queued;
    q->gather = gather > 0 ? gather : 1;
    if (pthread_mutex_init(&q->mu, NULL) != 0)
        return chat_fail(f, CHAT_EINTERNAL, "cannot create the send queue's lock");
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&q->more, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&q->mu);
        return chat_fail(f, CHAT_EINTERNAL, "cannot create the send queue's condition");
    }
    pthread_condattr_destroy(&ca);
    return 0;
}

void sendq_destroy(struct sendq *q)
{
    struct sendq_job *j;

    while ((j = STAILQ_FIRST(&q->jobs))) {
        STAILQ_REMOVE_HEAD(&q->jobs, link);
        free(j);
    }
    pthread_cond_destroy(&q->more);
    pthread_mutex_destroy(&q->mu);
}

struct sendq_job *sendq_job_new(const struct valid_send *m)
{
    struct sendq_job *j = malloc(sizeof *j + valid_send_size(m));

    if (!j)
        return NULL;
    memset(j, 0, sizeof *j);
    valid_send_copy(m, j->data, &j->msg);
    j->item.msg = &j->msg;
    return j;
}

int sendq_push(struct sendq *q, struct sendq_job *j, bool *drain, struct chat_fail *f)
{
    pthread_mutex_lock(&q->mu);
    if (q->queued >= q->max_queued) {
        /* The database is slower than the sends: answer now, not after the queue. */
        pthread_mutex_unlock(&q->mu);
        free(j);
        return chat_fail(f, CHAT_EUNAVAIL, "too many messages waiting to be stored, retry");
    }
    STAILQ_INSERT_TAIL(&q->jobs, j, link);
    q->queued++;
    if (drain) {
        *drain = q->drain_starts = !q->draining;
        q->draining = true;
        /* A gathering drainer takes it with its batch, or with the next one. */
        if (!*drain && q->gathering && q->queued >= q->gather)
            pthread_cond_signal(&q->more);
    } else {
        pthread_cond_signal(&q->more);
    }
    pthread_mutex_unlock(&q->mu);
    return 0;
}

/* Waits up to CHAT_GATHER_US for gather jobs. Called with mu held. */
static void gather(struct sendq *q)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += CHAT_GATHER_US * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    q->gathering = true;
    while (q->queued < q->gather && pthread_cond_timedwait(&q->more, &q->mu, &until) == 0)
        ;
    q->gathering = false;
}

/* Moves up to CHAT_BATCH_MAX jobs into batch. Called with mu held. */
static size_t take(struct sendq *q, struct sendq_job **batch)
{
    size_t n = 0;

    for (; n < CHAT_BATCH_MAX && !STAILQ_EMPTY(&q->jobs); n++) {
        batch[n] = STAILQ_FIRST(&q->jobs);
        STAILQ_REMOVE_HEAD(&q->jobs, link);
    }
    q->queued -= n;
    if (n)
        q->last_batch = n;   /* the empty take that ends a drain is not a batch */
    return n;
}

bool sendq_short(struct sendq *q)
{
    bool short_;

    pthread_mutex_lock(&q->mu);
    short_ = q->queued > 0 && q->queued < q->gather;
    pthread_mutex_unlock(&q->mu);
    return short_;
}

size_t sendq_next_batch(struct sendq *q, struct sendq_job **batch, bool waited)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    if (q->drain_starts) {
        q->drain_starts = false;
        if (!waited && q->last_batch > 1 && q->queued < q->gather)
            gather(q);
    }
    if ((n = take(q, batch)) == 0)
        q->draining = false;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t sendq_wait_batch(struct sendq *q, struct sendq_job **batch)
{
    size_t n;

    pthread_mutex_lock(&q->mu);
    while (STAILQ_EMPTY(&q->jobs) && !q->stopping)
        pthread_cond_wait(&q->more, &q->mu);
    n = take(q, batch);
    pthread_mutex_unlock(&q->mu);
    return n;
}

void sendq_stop(struct sendq *q)
{
    pthread_mutex_lock(&q->mu);
    q->stopping = true;
    pthread_cond_broadcast(&q->more);
    pthread_mutex_unlock(&q->mu);
}

int sendq_store(struct store *s, struct sendq_job **batch, size_t n, size_t *stored,
                struct chat_fail *why)
{
    struct store_item *items[CHAT_BATCH_MAX];
    int err;

    for (size_t i = 0; i < n; i++)
        items[i] = &batch[i]->item;
    if ((err = store_append_batch(s, items, n)) < 0)
        *why = items[0]->fail;
    *stored = 0;
    for (size_t i = 0; i < n; i++)
        if (items[i]->err == 0 && !items[i]->sent.duplicate)
            (*stored)++;
    return err;
}
