/*
 * commit.c - group commit by whichever worker finds nobody committing
 * (see commit.h).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "commit.h"
#include "metrics.h"

#define BATCH_MAX 256          /* messages in one transaction, at most */

struct job {
    struct job *next;
    FCGX_Request *req;
    struct valid_send msg;     /* borrows data */
    struct store_item item;
    char data[];
};

struct commit {
    pthread_mutex_t mu;
    struct job *head, **tail;  /* guarded by mu */
    bool committing;           /* a thread owns the store; guarded by mu */
    struct store *store;
    struct hold *hold;
    void (*answer)(FCGX_Request *, const struct valid_send *, const struct store_item *);
};

/* Stores one batch in one transaction, then answers its requests. */
static void commit_batch(struct commit *c, struct job **batch, size_t n)
{
    struct store_item *items[BATCH_MAX];
    size_t stored = 0;

    for (size_t i = 0; i < n; i++)
        items[i] = &batch[i]->item;
    store_append_batch(c->store, items, n);
    for (size_t i = 0; i < n; i++)
        if (items[i]->err == 0 && !items[i]->sent.duplicate)
            stored++;
    if (stored) {
        metrics_stored(stored);
        hold_kick(c->hold);
    }
    for (size_t i = 0; i < n; i++) {
        c->answer(batch[i]->req, &batch[i]->msg, &batch[i]->item);
        free(batch[i]);
    }
}

int commit_submit(struct commit *c, FCGX_Request *r, const struct valid_send *m,
                  struct chat_fail *f)
{
    struct job *j = malloc(sizeof *j + valid_send_size(m)), *batch[BATCH_MAX];

    if (!j)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->next = NULL;
    j->req = r;
    valid_send_copy(m, j->data, &j->msg);
    j->item = (struct store_item){ .msg = &j->msg };

    pthread_mutex_lock(&c->mu);
    *c->tail = j;
    c->tail = &j->next;
    if (c->committing) {
        /* The committer takes it after the batch it is storing now. */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    c->committing = true;
    while (c->head) {
        size_t n = 0;
        for (; c->head && n < BATCH_MAX; n++) {
            batch[n] = c->head;
            c->head = c->head->next;
        }
        if (!c->head)
            c->tail = &c->head;
        pthread_mutex_unlock(&c->mu);
        commit_batch(c, batch, n);
        pthread_mutex_lock(&c->mu);
    }
    c->committing = false;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

int commit_open(const struct commit_opts *o, struct commit **out, struct chat_fail *f)
{
    struct commit *c = calloc(1, sizeof *c);
    int err;

    if (!c)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->tail = &c->head;
    c->hold = o->hold;
    c->answer = o->answer;
    if ((err = store_open(&o->store, &c->store, f)) < 0) {
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
    pthread_mutex_destroy(&c->mu);
    free(c);
}
