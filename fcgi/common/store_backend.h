/*
 * store_backend.h - what a storage backend implements. store.c chooses one
 * by the --db argument and forwards every store_* call to it; nothing else
 * in the programs knows which backend it talks to.
 *
 * To add a backend: a file store_<name>.c (the only one that includes its
 * client library's header) defines a `const struct store_backend`, whose
 * connection struct starts with a `struct store`, and store.c names it in
 * its table. The functions keep the contracts of store.h; page rows are
 * added with store_page_add.
 */
#ifndef CHAT_STORE_BACKEND_H
#define CHAT_STORE_BACKEND_H

#include <pthread.h>

#include "store.h"

/* The first member of every backend's connection. */
struct store {
    const struct store_backend *backend;
};

struct store_backend {
    const char *name;
    /* Every call waits for a server's answer (a round trip), not only for CPU. */
    bool remote;
    /* Whether db (a path or a URI) names a database of this backend. */
    bool (*claims)(const char *db);
    int (*open)(const struct store_opts *o, struct store **out, struct chat_fail *f);
    void (*close)(struct store *s);
    /*
     * Stores items[0..n) in one transaction, committed before return.
     * Returns 0, or a negative code with *f set: nothing of the batch is
     * stored, and *begun tells whether the transaction had started (a
     * failure after the start may be one message's, see store.c).
     */
    int (*append_tx)(struct store *s, struct store_item **items, size_t n,
                     struct chat_fail *f, bool *begun);
    /*
     * Optional (see store_write_ahead): begins a transaction holding the
     * writers' turn, which the next append_tx ends. Returns whether it did.
     */
    bool (*write_ahead)(struct store *s);
    int (*fetch)(struct store *s, const char *room, size_t room_len, int64_t index,
                 int limit, int tail, struct store_page *page, struct chat_fail *f);
    int (*since)(struct store *s, int64_t after, int limit, struct store_page *page,
                 struct chat_fail *f);
    int (*data_version)(struct store *s, int64_t *v, struct chat_fail *f);
    int (*max_id)(struct store *s, int64_t *id, struct chat_fail *f);
    int (*prune_age)(struct store *s, int64_t before_ms, int batch, struct chat_fail *f);
    int (*prune_rooms)(struct store *s, int keep, int batch, struct chat_fail *f);
    int (*check)(struct store *s, struct chat_fail *f);
    int (*watch)(struct store *s, struct chat_fail *f);
    int (*changes_fd)(struct store *s);
    bool (*changes_drain)(struct store *s);
    int (*recheck_us)(struct store *s, bool written, bool changed);
};

/* Serialises the writers of this process (see store.h). */
extern pthread_mutex_t store_write_lock;

/*
 * A page being filled: its rows' strings go to one arena, which may move
 * while rows are added, so their places are kept as offsets until
 * store_page_done. Zero it before the first row.
 */
struct store_page_builder {
    size_t cap, used, arena_cap;
    struct store_page_offsets *offs;
};

/*
 * Adds a row (copies of its strings) to page. Returns 0, or CHAT_EUNAVAIL
 * with *f set when out of memory (the page then holds the rows before).
 */
int store_page_add(struct store_page *page, struct store_page_builder *b, int64_t id, int64_t ts,
                   const char *user, size_t user_len, const char *text, size_t text_len,
                   const char *room, size_t room_len, struct chat_fail *f);
/* Points the rows at their strings and frees the builder's state. Can't fail. */
void store_page_done(struct store_page *page, struct store_page_builder *b);

#endif
