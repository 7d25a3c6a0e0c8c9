/*
 * writer.c - the writer thread of chat-ws.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "writer.h"

struct job {
    struct job *next;
    uint64_t conn;
    size_t text_len, user_len, room_len, cid_len;
    bool has_cid;
    char data[];              /* text, user, room, cid, each NUL-terminated */
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

static void store_job(struct writer *w, struct job *j)
{
    struct valid_send m = {
        .text = j->data, .text_len = j->text_len,
        .user = j->data + j->text_len + 1, .user_len = j->user_len,
        .room = j->data + j->text_len + j->user_len + 2, .room_len = j->room_len,
        .cid = j->has_cid ? j->data + j->text_len + j->user_len + j->room_len + 3 : NULL,
        .cid_len = j->cid_len,
    };
    struct writer_result r = { .conn = j->conn };
    struct store_sent sent;

    if (store_append(w->store, &m, &sent, &r.fail) < 0) {
        add_result(w, &r);
    } else if (sent.duplicate) {
        r.id = sent.id;
        add_result(w, &r);
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;

    pthread_mutex_lock(&w->mu);
    for (;;) {
        struct job *batch;
        size_t had;

        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cv, &w->mu);
        if (!w->head)
            break;
        batch = w->head;
        w->head = NULL;
        w->tail = &w->head;
        w->pending = 0;
        pthread_mutex_unlock(&w->mu);

        while (batch) {
            struct job *j = batch;
            batch = j->next;
            store_job(w, j);
            free(j);
        }
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
    size_t size = m->text_len + m->user_len + m->room_len + m->cid_len + 4;
    struct job *j;
    char *p;

    pthread_mutex_lock(&w->mu);
    if (w->pending >= w->max_pending) {
        pthread_mutex_unlock(&w->mu);
        return chat_fail(f, CHAT_EUNAVAIL, "too many messages waiting to be stored, retry");
    }
    pthread_mutex_unlock(&w->mu);
    if (!(j = malloc(sizeof *j + size)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->next = NULL;
    j->conn = conn;
    j->text_len = m->text_len;
    j->user_len = m->user_len;
    j->room_len = m->room_len;
    j->cid_len = m->cid_len;
    j->has_cid = m->cid != NULL;
    p = j->data;
    memcpy(p, m->text, m->text_len); p += m->text_len; *p++ = '\0';
    memcpy(p, m->user, m->user_len); p += m->user_len; *p++ = '\0';
    memcpy(p, m->room, m->room_len); p += m->room_len; *p++ = '\0';
    if (m->cid)
        memcpy(p, m->cid, m->cid_len);
    p[m->cid ? m->cid_len : 0] = '\0';

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
