/*
 * commit.c - group commit by whichever worker finds nobody committing
 * (see commit.h).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "commit.h"
#include "metrics.h"

#define BATCH_MAX 256          /* messages in one transaction, at most */
#define GATHER_US 200          /* under load, how long a committer waits for more */
#define QUEUE_MAX (4 * BATCH_MAX)  /* sends waiting beyond this are refused at once */

struct job {
    struct job *next;
    FCGX_Request *req;
    struct valid_send msg;     /* borrows data */
    struct store_item item;
    char data[];
};

struct commit {
    pthread_mutex_t mu;
    pthread_cond_t gathered;   /* a gathering committer: the queue is full */
    struct job *head, **tail;  /* guarded by mu, as the fields up to store */
    size_t queued;             /* jobs in the queue */
    size_t last_batch;         /* messages in the last transaction */
    size_t gather;             /* a gathering committer waits for this many */
    bool committing;           /* a thread owns the store */
    bool gathering;            /* ... and waits for more sends */
    struct store *store;
    struct hold *hold;
    void (*answer)(FCGX_Request *, const struct valid_send *, const struct store_item *);
};

/* Answers the requests of a batch and frees it. */
static void answer_all(struct commit *c, struct job **batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->answer(batch[i]->req, &batch[i]->msg, &batch[i]->item);
        free(batch[i]);
    }
}

/*
 * Stores one batch in one transaction, then answers its requests. Returns
 * 0, or the code with which the database refused the whole batch (busy, a
 * full or read-only disk), *why set.
 */
static int commit_batch(struct commit *c, struct job **batch, size_t n, struct chat_fail *why)
{
    struct store_item *items[BATCH_MAX];
    size_t stored = 0;
    int err;

    for (size_t i = 0; i < n; i++)
        items[i] = &batch[i]->item;
    if ((err = store_append_batch(c->store, items, n)) < 0)
        *why = items[0]->fail;
    for (size_t i = 0; i < n; i++)
        if (items[i]->err == 0 && !items[i]->sent.duplicate)
            stored++;
    if (stored) {
        metrics_stored(stored);
        hold_kick(c->hold);
    }
    answer_all(c, batch, n);
    return err;
}

/*
 * After the database refused a whole batch, refuses what queued meanwhile
 * the same way rather than make each batch wait out the busy timeout again.
 * Called with mu held; returns with it held.
 */
static void refuse_queue(struct commit *c, int err, const struct chat_fail *why)
{
    while (c->head) {
        struct job *batch[BATCH_MAX];
        size_t n = 0;
        for (; c->head && n < BATCH_MAX; n++) {
            batch[n] = c->head;
            c->head = c->head->next;
            batch[n]->item.err = err;
            batch[n]->item.fail = *why;
        }
        if (!c->head)
            c->tail = &c->head;
        c->queued -= n;
        pthread_mutex_unlock(&c->mu);
        answer_all(c, batch, n);
        pthread_mutex_lock(&c->mu);
    }
}

/*
 * Under load (the last transaction stored more than one message), waits up
 * to GATHER_US for the sends other workers are reading to join the queue:
 * a transaction's cost is then shared by more messages, for at most that
 * much added latency. Alone, a send never waits. Called with mu held.
 */
static void gather(struct commit *c)
{
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += GATHER_US * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    c->gathering = true;
    while (c->queued < c->gather &&
           pthread_cond_timedwait(&c->gathered, &c->mu, &until) == 0)
        ;
    c->gathering = false;
}

int commit_submit(struct commit *c, FCGX_Request *r, const struct valid_send *m,
                  struct chat_fail *f)
{
    struct job *j, *batch[BATCH_MAX];
    struct chat_fail why;
    int err;

    if (!(j = malloc(sizeof *j + valid_send_size(m))))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->next = NULL;
    j->req = r;
    valid_send_copy(m, j->data, &j->msg);
    j->item = (struct store_item){ .msg = &j->msg };

    pthread_mutex_lock(&c->mu);
    if (c->queued >= QUEUE_MAX) {
        /* The database is slower than the sends: answer now, not after the queue. */
        pthread_mutex_unlock(&c->mu);
        free(j);
        return chat_fail(f, CHAT_EUNAVAIL, "too many messages waiting to be stored, retry");
    }
    *c->tail = j;
    c->tail = &j->next;
    c->queued++;
    if (c->committing) {
        /* The committer takes it with the batch it gathers or the next one. */
        if (c->gathering && c->queued >= c->gather)
            pthread_cond_signal(&c->gathered);
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->committing = true;
    if (c->last_batch > 1 && c->queued < c->gather)
        gather(c);
    while (c->head) {
        size_t n = 0;
        for (; c->head && n < BATCH_MAX; n++) {
            batch[n] = c->head;
            c->head = c->head->next;
        }
        if (!c->head)
            c->tail = &c->head;
        c->queued -= n;
        c->last_batch = n;
        pthread_mutex_unlock(&c->mu);
        err = commit_batch(c, batch, n, &why);
        pthread_mutex_lock(&c->mu);
        if (err < 0)
            refuse_queue(c, err, &why);
    }
    c->committing = false;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int commit_open(const struct commit_opts *o, struct commit **out, struct chat_fail *f)
{
    struct commit *c = calloc(1, sizeof *c);
    pthread_condattr_t ca;
    int err;

    if (!c)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->gathered, &ca);
    pthread_condattr_destroy(&ca);
    c->tail = &c->head;
    c->gather = o->gather > 0 ? o->gather : 1;
    c->hold = o->hold;
    c->answer = o->answer;
    if ((err = store_open(&o->store, &c->store, f)) < 0) {
        pthread_cond_destroy(&c->gathered);
        pthread_mutex_destroy(&c->mu);
        free(c);
        return err;
    }
    *out = c;
    return 0;
}

void commit_close(struct commit *c)
{
    if (!c)
        return;
    store_close(c->store);
    pthread_cond_destroy(&c->gathered);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
