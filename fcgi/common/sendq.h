/*
 * sendq.h - the bounded queue of validated sends waiting to be stored, the
 * one both programs use: chat-fcgi's group commit (whichever worker finds
 * nobody storing drains it) and chat-ws's writer thread (which drains it
 * for good).
 *
 * A send is copied into a job outside the lock (sendq_job_new); the bound
 * is checked when the job is appended, under the lock, so the queue never
 * holds more than max_queued and a refusal costs no wait. Batches come out
 * in order, at most CHAT_BATCH_MAX at a time, and are stored in one
 * transaction each (sendq_store).
 */
#ifndef CHAT_SENDQ_H
#define CHAT_SENDQ_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "store.h"
#include "valid.h"

struct sendq_job {
    STAILQ_ENTRY(sendq_job) link;
    void *req;                /* chat-fcgi: the request to answer */
    uint64_t conn;            /* chat-ws: the sending connection's id */
    struct valid_send msg;    /* borrows data */
    struct store_item item;   /* what became of it, once stored */
    char data[];
};

struct sendq {
    pthread_mutex_t mu;
    pthread_cond_t more;      /* a job was appended (or the queue stops) */
    STAILQ_HEAD(, sendq_job) jobs;  /* guarded by mu, as everything below */
    size_t queued, max_queued;
    size_t gather;            /* a draining worker under load waits for this many */
    size_t last_batch;        /* jobs in the last batch taken */
    bool draining;            /* a worker drains (sendq_push's claim) */
    bool drain_starts;        /* ... and has not taken its first batch */
    bool gathering;           /* ... and waits for more to arrive */
    bool stopping;
};

/*
 * max_queued: appends beyond it are refused. gather: how many sends can be
 * read at once (the workers serving), 1 for no gathering. Returns 0, or
 * CHAT_EINTERNAL with *f set.
 */
int sendq_init(struct sendq *q, size_t max_queued, size_t gather, struct chat_fail *f);
/* Frees the jobs still queued. */
void sendq_destroy(struct sendq *q);

/* A job holding a copy of m, req and conn zero; NULL when out of memory. free() it. */
struct sendq_job *sendq_job_new(const struct valid_send *m);

/*
 * Appends j. When max_queued jobs wait already, frees j and returns
 * CHAT_EUNAVAIL with *f set. With drain non-NULL: when nobody drains, the
 * caller now does (*drain is set) and must call sendq_next_batch until it
 * returns 0. Returns 0 otherwise.
 */
int sendq_push(struct sendq *q, struct sendq_job *j, bool *drain, struct chat_fail *f);

/*
 * The drainer's next batch, at most CHAT_BATCH_MAX jobs, oldest first.
 * Before the first batch of a drain, under load (the last batch held more
 * than one), it waits up to CHAT_GATHER_US for `gather` jobs, so that one
 * transaction serves more sends; alone, a send never waits; nor after the
 * drainer `waited` for its turn to write (sendq_short). Returns 0 when the
 * queue is empty, which ends the drain.
 */
size_t sendq_next_batch(struct sendq *q, struct sendq_job **batch, bool waited);
/*
 * Whether jobs wait, but fewer than `gather`: a batch that the drainer's
 * wait for its turn to write would fill. The queue shrinks only by the
 * drainer's takes, so a batch follows.
 */
bool sendq_short(struct sendq *q);

/* A thread that drains for good: waits for a batch; 0 once stopped and empty. */
size_t sendq_wait_batch(struct sendq *q, struct sendq_job **batch);
/* Wakes sendq_wait_batch for the end: what is queued is still taken. */
void sendq_stop(struct sendq *q);

/*
 * Stores a batch in one transaction (store_append_batch); each job's item
 * says what became of it. Returns 0, or the code with which the database
 * refused the whole batch, *why set. *stored: the new messages stored.
 */
int sendq_store(struct store *s, struct sendq_job **batch, size_t n, size_t *stored,
                struct chat_fail *why);

#endif
