/*
 * store_sqlite.h - what the files of the SQLite backend share: the
 * connection, its statements, and the helpers that run them. Only
 * store_sqlite*.c include it.
 */
#ifndef CHAT_STORE_SQLITE_H
#define CHAT_STORE_SQLITE_H

#include <sqlite3.h>

#include "notify.h"
#include "store_backend.h"

enum stmt_id {
    ST_BEGIN_READ, ST_BEGIN_WRITE, ST_COMMIT, ST_ROLLBACK,
    ST_INSERT, ST_FIND_CID, ST_AFTER, ST_TAIL, ST_PAGE_META, ST_SINCE,
    ST_DATA_VERSION, ST_MAX_ID,
    ST_ROOMS, ST_AGE_EDGE, ST_AGE_BATCH, ST_COUNT_EDGE, ST_ROOM_BATCH, ST_NOTE_PRUNED,
    ST_COUNT
};

/*
 * Checkpoint after 4000 WAL pages (16 MiB) rather than 1000: a busy room
 * rewrites the same few pages, so each checkpoint copies little and its
 * two syncs come four times less often.
 */
#define SQLITE_CKPT_PAGES 4000

struct sqlite_db {
    struct store base;
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    struct notify notify;      /* the watcher's connection only (sq_watch) */
    struct sqlite_ckpt *ckpt;  /* checkpoints aside (store_sqlite_ckpt.c), or NULL */
};

/* Maps a failed SQLite call to a refusal the client can act on. */
int sqlite_fail(struct sqlite_db *s, int rc, struct chat_fail *f, const char *what);
/* Steps a statement that returns no row, then resets it. */
int sqlite_exec_stmt(struct sqlite_db *s, enum stmt_id id);
/* Steps a statement that returns one integer into *out, then resets it. */
int sqlite_single_int(struct sqlite_db *s, enum stmt_id id, int64_t *out);

/* Retention (store_sqlite_prune.c), as store_backend.h's prune_age and prune_rooms. */
int sq_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f);
int sq_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f);

/*
 * Checkpoints (store_sqlite_ckpt.c): a thread with its own connection, set
 * up with `pragmas` and busy_ms, takes over s's automatic checkpoints.
 * Returns 0 or CHAT_EUNAVAIL with *f set. sqlite_ckpt_stop ends it, after
 * the round under way (a no-op without).
 */
int sqlite_ckpt_start(struct sqlite_db *s, const char *pragmas, int busy_ms, struct chat_fail *f);
void sqlite_ckpt_stop(struct sqlite_db *s);

/* SQLite's process-wide settings (store_sqlite_mutex.c), made once before the first connection. */
void store_sqlite_configure(void);

#endif
