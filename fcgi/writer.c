/*
 * writer.c - the writer thread of chat-ws.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "writer.h"

#define BATCH_MAX 256          /* messages in one transaction, at most */

struct job {
    struct job *next;
    uint64_t conn;
    struct valid_send msg;    /* borrows data */
    char data[];
};

struct writer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct job *head, **tail;  /* guarded by mu */
    size_t pending, max_pending;
    struct writer_result *results;
    size_t nresults, cap;
    bool stopping;
    struct store *store;
    struct feed *feed;
    void (*wake)(void *ctx);
    void *wake_ctx;
    pthread_t thread;
};

static void add_result(struct writer *w, const struct writer_result *r)
{
    pthread_mutex_lock(&w->mu);
    if (w->nresults == w->cap) {
        size_t ncap = w->cap ? w->cap * 2 : 64;
        struct writer_result *nr = realloc(w->results, ncap * sizeof *nr);
        if (!nr) {
            pthread_mutex_unlock(&w->mu);
            log_error("out of memory: a send result is lost");
            return;
        }
        w->results = nr;
        w->cap = ncap;
    }
    w->results[w->nresults++] = *r;
    pthread_mutex_unlock(&w->mu);
}

/* Tells the senders of refused messages and of repeated cids. */
static void note_results(struct writer *w, struct job **batch, struct store_item **items, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct writer_result r = { .conn = batch[i]->conn };
        if (items[i]->err < 0)
            r.fail = items[i]->fail;
        else if (items[i]->sent.duplicate)
            r.id = items[i]->sent.id;
        else
            continue;
        add_result(w, &r);
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct store_item items[BATCH_MAX], *ptrs[BATCH_MAX];
    struct job *batch[BATCH_MAX];

    pthread_mutex_lock(&w->mu);
    for (;;) {
        size_t n = 0, had;

        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break;
        for (; w->head && n < BATCH_MAX; n++) {
            batch[n] = w->head;
            w->head = w->head->next;
            items[n] = (struct store_item){ .msg = &batch[n]->msg };
            ptrs[n] = &items[n];
        }
        if (!w->head)
            w->tail = &w->head;
        w->pending -= n;
        pthread_mutex_unlock(&w->mu);

        store_append_batch(w->store, ptrs, n);
        note_results(w, batch, ptrs, n);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        feed_kick(w->feed);
        pthread_mutex_lock(&w->mu);
        had = w->nresults;
        if (had) {
            pthread_mutex_unlock(&w->mu);
            w->wake(w->wake_ctx);
            pthread_mutex_lock(&w->mu);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int writer_start(const struct writer_opts *o, struct writer **out, struct chat_fail *f)
{
    struct writer *w = calloc(1, sizeof *w);
    int err;

    if (!w)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->tail = &w->head;
    w->max_pending = o->max_pending;
    w->feed = o->feed;
    w->wake = o->wake;
    w->wake_ctx = o->wake_ctx;
    if ((err = store_open(&o->store, &w->store, f)) < 0)
        goto err;
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "cannot start the writer thread");
        goto err;
    }
    *out = w;
    return 0;
err:
    store_close(w->store);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    return err;
}

void writer_stop(struct writer *w)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    store_close(w->store);
    free(w->results);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int writer_submit(struct writer *w, uint64_t conn, const struct valid_send *m, struct chat_fail *f)
{
    struct job *j;

    pthread_mutex_lock(&w->mu);
    if (w->pending >= w->max_pending) {
        pthread_mutex_unlock(&w->mu);
        return chat_fail(f, CHAT_EUNAVAIL, "too many messages waiting to be stored, retry");
    }
    pthread_mutex_unlock(&w->mu);
    if (!(j = malloc(sizeof *j + valid_send_size(m))))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->next = NULL;
    j->conn = conn;
    valid_send_copy(m, j->data, &j->msg);

    pthread_mutex_lock(&w->mu);
    *w->tail = j;
    w->tail = &j->next;
    w->pending++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

void writer_take(struct writer *w, struct writer_result **out, size_t *n)
{
    pthread_mutex_lock(&w->mu);
    *out = w->results;
    *n = w->nresults;
    w->results = NULL;
    w->nresults = w->cap = 0;
    pthread_mutex_unlock(&w->mu);
}
