/*
 * store.c - the store's one seam: chooses the backend that --db names and
 * forwards to it (store_backend.h), and holds what every backend shares:
 * the split of a refused batch, the process's write lock, and pages.
 */
#include <stdlib.h>
#include <string.h>

#include "store_backend.h"

extern const struct store_backend store_pg, store_sqlite;

/* Tried in order; the last one claims every path. */
static const struct store_backend *const backends[] = { &store_pg, &store_sqlite };

pthread_mutex_t store_write_lock = PTHREAD_MUTEX_INITIALIZER;

int store_open(const struct store_opts *o, struct store **out, struct chat_fail *f)
{
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++)
        if (backends[i]->claims(o->path))
            return backends[i]->open(o, out, f);
    return chat_fail(f, CHAT_EBADREQ, "no storage backend for %s", o->path);
}

void store_close(struct store *s)
{
    if (s)
        s->backend->close(s);
}

bool store_remote(const struct store *s)
{
    return s->backend->remote;
}

int store_append_batch(struct store *s, struct store_item **items, size_t n)
{
    struct chat_fail f;
    bool begun, split;
    int err;

    for (size_t i = 0; i < n; i++)
        items[i]->err = 0;
    pthread_mutex_lock(&store_write_lock);
    if ((err = s->backend->append_tx(s, items, n, &f, &begun)) < 0) {
        /*
         * Busy, a full or read-only disk: the same answer for all. Anything
         * else may be one message's (a trigger, a constraint): store the
         * others, each on its own.
         */
        split = begun && n > 1 && err != CHAT_EUNAVAIL;
        for (size_t i = 0; i < n; i++) {
            if (split) {
                items[i]->err = s->backend->append_tx(s, &items[i], 1, &items[i]->fail, &begun);
            } else {
                items[i]->err = err;
                items[i]->fail = f;
            }
        }
        if (split)
            err = 0;
    }
    pthread_mutex_unlock(&store_write_lock);
    return err;
}

bool store_write_ahead(struct store *s)
{
    bool ours;

    if (!s->backend->write_ahead)
        return false;
    pthread_mutex_lock(&store_write_lock);
    ours = s->backend->write_ahead(s);
    pthread_mutex_unlock(&store_write_lock);
    return ours;
}

int store_fetch(struct store *s, const char *room, size_t room_len, int64_t index,
                int limit, int tail, struct store_page *page, struct chat_fail *f)
{
    return s->backend->fetch(s, room, room_len, index, limit, tail, page, f);
}

int store_since(struct store *s, int64_t after, int limit, struct store_page *page,
                struct chat_fail *f)
{
    return s->backend->since(s, after, limit, page, f);
}

int store_data_version(struct store *s, int64_t *v, struct chat_fail *f)
{
    return s->backend->data_version(s, v, f);
}

int store_max_id(struct store *s, int64_t *id, struct chat_fail *f)
{
    return s->backend->max_id(s, id, f);
}

int store_prune_age(struct store *s, int64_t before_ms, int batch, struct chat_fail *f)
{
    return s->backend->prune_age(s, before_ms, batch, f);
}

int store_prune_rooms(struct store *s, int keep, int batch, struct chat_fail *f)
{
    return s->backend->prune_rooms(s, keep, batch, f);
}

int store_check(struct store *s, struct chat_fail *f)
{
    return s->backend->check(s, f);
}

int store_watch(struct store *s, struct chat_fail *f)
{
    return s->backend->watch(s, f);
}

int store_changes_fd(struct store *s)
{
    return s->backend->changes_fd(s);
}

bool store_changes_drain(struct store *s)
{
    return s->backend->changes_drain(s);
}

int store_recheck_us(struct store *s, bool written, bool changed)
{
    return s->backend->recheck_us(s, written, changed);
}

/* ---- pages ---- */

struct store_page_offsets {
    size_t user, text, room;
};

/* Copies len bytes and a NUL to the arena; returns their offset. */
static size_t arena_put(struct store_page *page, struct store_page_builder *b,
                        const char *p, size_t len)
{
    size_t at = b->used;
    if (len)
        memcpy(page->arena + at, p, len);
    page->arena[at + len] = '\0';
    b->used += len + 1;
    return at;
}

int store_page_add(struct store_page *page, struct store_page_builder *b, int64_t id, int64_t ts,
                   const char *user, size_t user_len, const char *text, size_t text_len,
                   const char *room, size_t room_len, struct chat_fail *f)
{
    size_t need = user_len + text_len + room_len + 3;
    struct store_msg *m;

    if (page->n == b->cap) {
        size_t ncap = b->cap ? b->cap * 2 : 16;
        struct store_msg *nm = realloc(page->msgs, ncap * sizeof *nm);
        struct store_page_offsets *no = nm ? realloc(b->offs, ncap * sizeof *no) : NULL;
        if (nm)
            page->msgs = nm;
        if (!no)
            return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
        b->offs = no;
        b->cap = ncap;
    }
    if (b->arena_cap - b->used < need) {
        size_t ncap = b->arena_cap ? b->arena_cap * 2 : 4096;
        char *na;
        while (ncap - b->used < need)
            ncap *= 2;
        if (!(na = realloc(page->arena, ncap)))
            return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
        page->arena = na;
        b->arena_cap = ncap;
    }
    b->offs[page->n] = (struct store_page_offsets){
        .user = arena_put(page, b, user, user_len),
        .text = arena_put(page, b, text, text_len),
        .room = arena_put(page, b, room, room_len),
    };
    m = &page->msgs[page->n++];
    m->id = id;
    m->ts = ts;
    m->user_len = user_len;
    m->text_len = text_len;
    m->room_len = room_len;
    return 0;
}

void store_page_done(struct store_page *page, struct store_page_builder *b)
{
    for (size_t i = 0; i < page->n; i++) {
        page->msgs[i].user = page->arena + b->offs[i].user;
        page->msgs[i].text = page->arena + b->offs[i].text;
        page->msgs[i].room = page->arena + b->offs[i].room;
    }
    free(b->offs);
    b->offs = NULL;
}

void store_page_free(struct store_page *page)
{
    free(page->msgs);
    free(page->arena);
    page->msgs = NULL;
    page->arena = NULL;
    page->n = 0;
}
