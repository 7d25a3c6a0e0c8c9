/*
 * feed.c - chat-ws's consumer of the watcher: new rows rendered once, queued
 * for the event loop.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "feed.h"
#include "render.h"
#include "watch.h"

struct feed {
    pthread_mutex_t mu;
    struct feed_msg **queue;    /* guarded by mu */
    size_t n, cap;
    void (*wake)(void *ctx);
    void *wake_ctx;
    struct watch *watch;
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
    if (m && --m->refs == 0) {
        free(m->sse);
        free(m);
    }
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
 * The watcher's new rows: renders each once and queues it for the loop.
 * Returns the last id queued (less than the batch's when memory ran out).
 */
static int64_t on_rows(void *ctx, const struct store_page *rows)
{
    struct feed *fd = ctx;
    int64_t taken = rows->n ? rows->msgs[0].id - 1 : rows->max_index;

    for (size_t i = 0; i < rows->n; i++) {
        const struct store_msg *sm = &rows->msgs[i];
        struct feed_msg *m = NULL;
        size_t len;
        char *json;

        /* No client can be in a room with a longer name (a row written by hand). */
        if (sm->room_len <= CHAT_NAME_MAX) {
            json = render_message(sm, &len);
            m = json ? feed_msg_new(json, len) : NULL;
            free(json);
            if (!m)
                break;
            /* Complete before the loop can see it. */
            m->id = sm->id;
            m->room_len = sm->room_len;
            memcpy(m->room, sm->room, sm->room_len + 1);
            if (!enqueue(fd, m)) {
                feed_msg_unref(m);
                break;
            }
        }
        taken = sm->id;
    }
    if (rows->n)
        fd->wake(fd->wake_ctx);
    return taken;
}

int feed_start(const struct feed_opts *o, struct feed **out, struct chat_fail *f)
{
    struct feed *fd = calloc(1, sizeof *fd);
    int err;

    if (!fd)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&fd->mu, NULL);
    fd->wake = o->wake;
    fd->wake_ctx = o->wake_ctx;
    err = watch_start(&(struct watch_opts){ .store = o->store, .probe_ms = o->probe_ms,
                                            .on_rows = on_rows, .consumer_fd = -1, .ctx = fd },
                      &fd->watch, f);
    if (err < 0) {
        pthread_mutex_destroy(&fd->mu);
        free(fd);
        return err;
    }
    *out = fd;
    return 0;
}

void feed_stop(struct feed *fd)
{
    if (!fd)
        return;
    watch_stop(fd->watch);
    for (size_t i = 0; i < fd->n; i++)
        feed_msg_unref(fd->queue[i]);
    free(fd->queue);
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
    watch_kick(fd->watch);
}

void feed_set_listening(struct feed *fd, bool listening)
{
    watch_listen(fd->watch, listening);
}
