/*
 * writer.c - the writer thread of chat-ws, draining the shared send queue
 * (sendq.h) for good.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "chat_limits.h"
#include "log.h"
#include "sendq.h"
#include "writer.h"

struct writer {
    struct sendq q;
    pthread_mutex_t mu;        /* guards the results */
    struct writer_result *results;
    size_t nresults, cap;
    struct store *store;
    struct feed *feed;
    void (*wake)(void *ctx);
    void *wake_ctx;
    pthread_t thread;
};

/* Notes what the senders of refused messages and of repeated cids must hear. */
static size_t note_results(struct writer *w, struct sendq_job **batch, size_t n)
{
    size_t noted = 0;

    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        const struct store_item *it = &batch[i]->item;
        struct writer_result r = { .conn = batch[i]->conn };

        if (it->err < 0)
            r.fail = it->fail;
        else if (it->sent.duplicate)
            r.id = it->sent.id;
        else
            continue;
        if (w->nresults == w->cap) {
            size_t ncap = w->cap ? w->cap * 2 : 64;
            struct writer_result *nr = realloc(w->results, ncap * sizeof *nr);
            if (!nr) {
                log_error("out of memory: a send result is lost");
                continue;
            }
            w->results = nr;
            w->cap = ncap;
        }
        w->results[w->nresults++] = r;
        noted++;
    }
    pthread_mutex_unlock(&w->mu);
    return noted;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct sendq_job *batch[CHAT_BATCH_MAX];
    struct chat_fail why;
    size_t n, stored;

    while ((n = sendq_wait_batch(&w->q, batch)) > 0) {
        sendq_store(w->store, batch, n, &stored, &why);
        if (note_results(w, batch, n))
            w->wake(w->wake_ctx);
        for (size_t i = 0; i < n; i++)
            free(batch[i]);
        if (stored)
            feed_kick(w->feed);
    }
    return NULL;
}

int writer_start(const struct writer_opts *o, struct writer **out, struct chat_fail *f)
{
    struct writer *w = calloc(1, sizeof *w);
    int err;

    if (!w)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    if ((err = sendq_init(&w->q, CHAT_WRITER_QUEUE_MAX, 1, f)) < 0) {
        free(w);
        return err;
    }
    pthread_mutex_init(&w->mu, NULL);
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
    pthread_mutex_destroy(&w->mu);
    sendq_destroy(&w->q);
    free(w);
    return err;
}

void writer_stop(struct writer *w)
{
    if (!w)
        return;
    sendq_stop(&w->q);
    pthread_join(w->thread, NULL);
    store_close(w->store);
    free(w->results);
    pthread_mutex_destroy(&w->mu);
    sendq_destroy(&w->q);
    free(w);
}

int writer_submit(struct writer *w, uint64_t conn, const struct valid_send *m, struct chat_fail *f)
{
    struct sendq_job *j = sendq_job_new(m);

    if (!j)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->conn = conn;
    return sendq_push(&w->q, j, NULL, f);
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
