/*
 * store.h - the message store: one connection to the database and its
 * prepared statements, on the backend that the path or URI names
 * (store_backend.h; SQLite in store_sqlite.c).
 *
 * Only the backend files include a database client's header. A struct store is used
 * by one thread at a time; every thread that touches the database opens its
 * own. Writes from all connections of a process are serialised by a
 * process-wide mutex, so threads of one process never spin in SQLite's busy
 * handler against each other; other processes are waited on for at most the
 * busy timeout, then the write fails with CHAT_EUNAVAIL.
 */
#ifndef CHAT_STORE_H
#define CHAT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "valid.h"

struct store;

struct store_opts {
    const char *path;        /* database file; created with the schema when new */
    int busy_ms;             /* how long to wait for another writer */
    bool sync_full;          /* PRAGMA synchronous=FULL: survive power loss */
    bool checkpoint_aside;   /* SQLite: a thread checkpoints the WAL, not this
                                connection's commits (the busy writer's) */
};

/* One stored message. Strings are NUL-terminated copies owned by the page. */
struct store_msg {
    int64_t id;
    int64_t ts;
    const char *room; size_t room_len;
    const char *user; size_t user_len;
    const char *text; size_t text_len;
};

/* The answer to a fetch: rows oldest first, the cursor, and whether more wait. */
struct store_page {
    struct store_msg *msgs;
    size_t n;
    int64_t max_index;       /* id of the last row, or the room's latest id */
    bool more;
    int64_t seen_id;         /* largest id of any room in the snapshot */
    bool pruned;             /* retention deleted messages after the cursor */
    char *arena;             /* owns the strings of msgs */
};

/* What a send stored (or found, for a repeated cid). */
struct store_sent {
    int64_t id;
    int64_t ts;
    bool duplicate;
};

/*
 * Opens (creating when new, with sql/schema.sql) the database and prepares
 * the statements. Returns 0 and sets *out, or a negative code with the reason
 * in *f (a database from a newer schema version is refused).
 */
int store_open(const struct store_opts *o, struct store **out, struct chat_fail *f);
/* Closes the connection; store_close(NULL) is a no-op. */
void store_close(struct store *s);
/*
 * Whether each call waits for a server (PostgreSQL: a round trip), so that
 * a thread in it is idle, rather than working on this machine's CPU (SQLite).
 */
bool store_remote(const struct store *s);

/* One message of a batch, and what became of it. */
struct store_item {
    const struct valid_send *msg;
    struct store_sent sent;   /* when err is 0 */
    int err;                  /* 0, or a negative code with fail set */
    struct chat_fail fail;
};

/*
 * Group commit: stores the n validated messages in one transaction,
 * committed before return, in their order. A cid already used in the room
 * (or earlier in the batch) stores nothing and reports the first id with
 * duplicate set.
 * When one message fails, the others are stored each on its own, so only it
 * is refused, and 0 is returned; when the database is busy or refuses
 * writes, all are refused alike and that code (CHAT_EUNAVAIL) is returned.
 */
int store_append_batch(struct store *s, struct store_item **items, size_t n);
/*
 * Before store_append_batch: waits until this writer may commit next (on
 * PostgreSQL, the lock that keeps ids in commit order, which every node's
 * writer takes), so that the batch taken after the wait holds what queued
 * meanwhile. Returns whether it waited; then the next store_append_batch
 * on s must follow (it commits, or rolls back, and ends the turn). A no-op
 * returning false where writers do not take turns across processes.
 */
bool store_write_ahead(struct store *s);

/*
 * Reads, in one snapshot, the room's messages with id > index (at most
 * limit, more set when others follow) or, when tail > 0, its last tail
 * messages. Returns 0 and fills *page (release with store_page_free), or a
 * negative code with *f set.
 */
int store_fetch(struct store *s, const char *room, size_t room_len, int64_t index,
                int limit, int tail, struct store_page *page, struct chat_fail *f);
/*
 * Reads the messages of every room with id > after, oldest first, at most
 * limit (more set when others follow). max_index and seen_id are the last
 * id read, or after when none. Returns 0 or a negative code with *f set.
 */
int store_since(struct store *s, int64_t after, int limit, struct store_page *page,
                struct chat_fail *f);

/* Releases a page; safe on a zeroed or already freed page. */
void store_page_free(struct store_page *page);

/*
 * PRAGMA data_version: changes when another connection commits. The cheap
 * probe of the watcher. Returns 0 and sets *v, or a negative code with *f set.
 */
int store_data_version(struct store *s, int64_t *v, struct chat_fail *f);
/* The largest message id (0 when empty). Returns 0 or a negative code with *f set. */
int store_max_id(struct store *s, int64_t *id, struct chat_fail *f);

/*
 * Retention, one batch of at most `batch` messages per write transaction, so
 * writers wait for a batch at the most. store_prune_age deletes one batch of
 * messages older than the first one stored at or after before_ms (ids
 * and times go together); store_prune_rooms keeps the last `keep`
 * messages of every room. Both note the largest id deleted per room (for
 * page.pruned). Return the messages deleted, or a negative code with *f set.
 */
int store_prune_age(struct store *s, int64_t before_ms, int batch, struct chat_fail *f);
int store_prune_rooms(struct store *s, int keep, int batch, struct chat_fail *f);

/* 0 when the database can be read and written now, else CHAT_EUNAVAIL. */
int store_check(struct store *s, struct chat_fail *f);

/*
 * Change notices, for the watcher's own connection: after store_watch,
 * store_changes_fd (-1 when there is no such mechanism: the timer alone)
 * turns readable when any process may have committed; store_changes_drain
 * reads what made it so and says whether it was such a commit. After a
 * probe (written: a notice woke it; changed: it found a commit),
 * store_recheck_us says how soon to probe again, or -1 for the usual timer:
 * a notice may come before its commit is visible.
 */
int store_watch(struct store *s, struct chat_fail *f);
int store_changes_fd(struct store *s);
bool store_changes_drain(struct store *s);
int store_recheck_us(struct store *s, bool written, bool changed);

#endif
