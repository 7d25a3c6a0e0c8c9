/*
 * store_sqlite.c - the SQLite backend of the store (store_backend.h), the
 * only file that includes sqlite3.h: open, append, fetch, retention and
 * the change probes of the watcher.
 *
 * Every statement is prepared once per connection in store_open() and only
 * ever bound with sqlite3_bind_*: no SQL text is built from input.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "chat_limits.h"
#include "log.h"
#include "notify.h"
#include "store_sqlite.h"
#include "util.h"

#define SCHEMA_VERSION 3

extern const char schema_sql[];   /* sql/schema.sql, compiled in by the Makefile */

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN_READ]  = "BEGIN DEFERRED",
    [ST_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [ST_COMMIT]      = "COMMIT",
    [ST_ROLLBACK]    = "ROLLBACK",
    [ST_INSERT]      = "INSERT INTO messages(room, user, text, cid, ts) VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_FIND_CID]    = "SELECT id, ts FROM messages WHERE room = ?1 AND cid = ?2",
    [ST_AFTER]       = "SELECT id, ts, user, text, room FROM messages"
                       " WHERE room = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    [ST_TAIL]        = "SELECT id, ts, user, text, room FROM"
                       " (SELECT id, ts, user, text, room FROM messages WHERE room = ?1"
                       "  ORDER BY id DESC LIMIT ?2) ORDER BY id",
    [ST_SINCE]       = "SELECT id, ts, user, text, room FROM messages"
                       " WHERE id > ?1 ORDER BY id LIMIT ?2",
    /* What a page says beside its rows, in one step: the room's latest id, the latest id, pruned upto. */
    [ST_PAGE_META]   = "SELECT (SELECT coalesce(max(id), 0) FROM messages WHERE room = ?1),"
                       " (SELECT coalesce(max(id), 0) FROM messages),"
                       " coalesce((SELECT upto FROM pruned WHERE room = ?1), 0)",
    [ST_DATA_VERSION]= "PRAGMA data_version",
    [ST_MAX_ID]      = "SELECT coalesce(max(id), 0) FROM messages",
    [ST_ROOMS]       = "SELECT DISTINCT room FROM messages",
    /* Retention deletes in batches and returns what it deleted, to note it. */
    /* The first id young enough to keep: a walk from the oldest row, as long as what is old. */
    [ST_AGE_EDGE]    = "SELECT coalesce((SELECT id FROM messages WHERE ts >= ?1 ORDER BY id LIMIT 1),"
                       " (SELECT coalesce(max(id), 0) + 1 FROM messages))",
    [ST_AGE_BATCH]   = "DELETE FROM messages WHERE id IN"
                       " (SELECT id FROM messages WHERE id < ?1 ORDER BY id LIMIT ?2)"
                       " RETURNING id, room",
    [ST_COUNT_EDGE]  = "SELECT id FROM messages WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2",
    [ST_ROOM_BATCH]  = "DELETE FROM messages WHERE id IN"
                       " (SELECT id FROM messages WHERE room = ?1 AND id <= ?2 ORDER BY id LIMIT ?3)"
                       " RETURNING id, room",
    [ST_NOTE_PRUNED] = "INSERT INTO pruned(room, upto) VALUES (?1, ?2)"
                       " ON CONFLICT(room) DO UPDATE SET upto = max(upto, excluded.upto)",
};

static const struct store_backend *backend_of(void);
static void sq_close(struct store *base);

/* Maps a failed SQLite call to a refusal the client can act on. */
int sqlite_fail(struct sqlite_db *s, int rc, struct chat_fail *f, const char *what)
{
    int prim = rc & 0xff;

    if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED)
        return chat_fail(f, CHAT_EUNAVAIL, "database is busy, try again");
    if (prim == SQLITE_FULL || prim == SQLITE_IOERR || prim == SQLITE_READONLY ||
        prim == SQLITE_CANTOPEN || prim == SQLITE_NOMEM || prim == SQLITE_PROTOCOL) {
        log_warn("%s: %s", what, sqlite3_errmsg(s->db));
        return chat_fail(f, CHAT_EUNAVAIL, "database is unavailable (%s)", sqlite3_errstr(rc));
    }
    log_error("%s: %s", what, sqlite3_errmsg(s->db));
    return chat_fail(f, CHAT_EINTERNAL, "database error (%s)", sqlite3_errstr(rc));
}

/* Steps a statement that returns no row, then resets it. */
int sqlite_exec_stmt(struct sqlite_db *s, enum stmt_id id)
{
    int rc = sqlite3_step(s->st[id]);
    sqlite3_reset(s->st[id]);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

int sqlite_single_int(struct sqlite_db *s, enum stmt_id id, int64_t *out)
{
    sqlite3_stmt *st = s->st[id];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}


/* Creates the schema when the database has none; refuses a newer one. */
static int apply_schema(struct sqlite_db *s, struct chat_fail *f)
{
    sqlite3_stmt *st = NULL;
    int64_t version = 0, tables = 0;
    int rc;

    rc = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return sqlite_fail(s, rc, f, "begin schema");
    rc = sqlite3_prepare_v2(s->db, "SELECT (SELECT user_version FROM pragma_user_version),"
                            " (SELECT count(*) FROM sqlite_schema WHERE name = 'messages')",
                            -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        version = sqlite3_column_int64(st, 0);
        tables = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return chat_fail(f, CHAT_EUNAVAIL,
                         "database schema version %lld is newer than this program's %d: "
                         "upgrade the program", (long long)version, SCHEMA_VERSION);
    }
    if (tables == 0 || version < SCHEMA_VERSION) {
        /* Applying the schema again changes nothing more: this also upgrades. */
        rc = sqlite3_exec(s->db, schema_sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) {
            int err = sqlite_fail(s, rc, f, "apply schema");
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return err;
        }
        log_info("%s the schema in %s", tables ? "upgraded" : "created",
                 sqlite3_db_filename(s->db, "main"));
    }
    rc = sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return sqlite_fail(s, rc, f, "commit schema");
    }
    return 0;
}

static int sq_open(const struct store_opts *o, struct store **out, struct chat_fail *f)
{
    struct sqlite_db *s = calloc(1, sizeof *s);
    char pragmas[128];
    int rc, err;

    store_sqlite_configure();
    if (!s)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    s->base.backend = backend_of();
    s->notify.fd = -1;
    rc = sqlite3_open_v2(o->path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = chat_fail(f, CHAT_EUNAVAIL, "cannot open database %s: %s", o->path,
                        s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto err;
    }
    sqlite3_busy_timeout(s->db, o->busy_ms);
    sqlite3_wal_autocheckpoint(s->db, SQLITE_CKPT_PAGES);
    sqlite3_extended_result_codes(s->db, 1);
    /* A sqlite3 CLI that breaks in must not make us wait forever for WAL mode. */
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        err = sqlite_fail(s, rc, f, "journal_mode");
        goto err;
    }
    snprintf(pragmas, sizeof pragmas, "PRAGMA synchronous = %s; PRAGMA foreign_keys = ON",
             o->sync_full ? "FULL" : "NORMAL");
    if ((rc = sqlite3_exec(s->db, pragmas, NULL, NULL, NULL)) != SQLITE_OK) {
        err = sqlite_fail(s, rc, f, "pragmas");
        goto err;
    }
    if ((err = apply_schema(s, f)) < 0)
        goto err;
    if (o->checkpoint_aside && (err = sqlite_ckpt_start(s, pragmas, o->busy_ms, f)) < 0)
        goto err;
    for (int i = 0; i < ST_COUNT; i++) {
        rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
        if (rc != SQLITE_OK) {
            err = chat_fail(f, CHAT_EINTERNAL, "prepare \"%s\": %s", stmt_sql[i], sqlite3_errmsg(s->db));
            goto err;
        }
    }
    *out = &s->base;
    return 0;
err:
    sq_close(&s->base);
    return err;
}

static void sq_close(struct store *base)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    if (!s)
        return;
    sqlite_ckpt_stop(s);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(s->st[i]);
    sqlite3_close(s->db);
    notify_close(&s->notify);
    free(s);
}

static void bind_text(sqlite3_stmt *st, int col, const char *p, size_t len)
{
    if (p)
        sqlite3_bind_text(st, col, p, (int)len, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, col);
}

/*
 * Stores one message inside the open write transaction (or finds its cid).
 * Returns SQLITE_OK, or the failed step's code with *what naming it.
 */
static int append_one(struct sqlite_db *s, const struct valid_send *m, struct store_sent *out,
                      const char **what)
{
    sqlite3_stmt *ins = s->st[ST_INSERT], *find = s->st[ST_FIND_CID];
    int rc;

    out->duplicate = false;
    if (m->cid) {
        /* A cid used before in this room (or earlier in the batch): the first row. */
        bind_text(find, 1, m->room, m->room_len);
        bind_text(find, 2, m->cid, m->cid_len);
        rc = sqlite3_step(find);
        if (rc == SQLITE_ROW) {
            out->id = sqlite3_column_int64(find, 0);
            out->ts = sqlite3_column_int64(find, 1);
            out->duplicate = true;
        }
        sqlite3_reset(find);
        sqlite3_clear_bindings(find);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
            *what = "find cid";
            return rc;
        }
        if (out->duplicate)
            return SQLITE_OK;
    }
    /* Every parameter is bound each time: no need to clear the bindings. */
    out->ts = util_wall_ms();
    bind_text(ins, 1, m->room, m->room_len);
    bind_text(ins, 2, m->user, m->user_len);
    bind_text(ins, 3, m->text, m->text_len);
    bind_text(ins, 4, m->cid, m->cid_len);
    sqlite3_bind_int64(ins, 5, out->ts);
    rc = sqlite3_step(ins);
    out->id = sqlite3_last_insert_rowid(s->db);
    sqlite3_reset(ins);
    *what = "insert";
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Ends a failed write transaction, if SQLite has not ended it already. */
static void rollback(struct sqlite_db *s)
{
    if (!sqlite3_get_autocommit(s->db))
        sqlite_exec_stmt(s, ST_ROLLBACK);
}

/*
 * Stores items[0..n) in one transaction, under the caller's write lock.
 * Returns 0, or a negative code with *f set (the transaction is then rolled
 * back and nothing of the batch is stored; *begun tells whether it started).
 */
static int sq_append_tx(struct store *base, struct store_item **items, size_t n,
                        struct chat_fail *f, bool *begun)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    const char *what = "begin write";
    int rc, err;

    *begun = false;
    if ((rc = sqlite_exec_stmt(s, ST_BEGIN_WRITE)) != SQLITE_OK)
        return sqlite_fail(s, rc, f, what);
    *begun = true;
    for (size_t i = 0; i < n; i++)
        if ((rc = append_one(s, items[i]->msg, &items[i]->sent, &what)) != SQLITE_OK)
            goto rollback;
    what = "commit";
    if ((rc = sqlite_exec_stmt(s, ST_COMMIT)) == SQLITE_OK)
        return 0;
rollback:
    err = sqlite_fail(s, rc, f, what);   /* before the rollback replaces the message */
    rollback(s);
    return err;
}

/* Copies the rows of a stepped statement into the page (up to max rows). */
static int read_rows(struct sqlite_db *s, sqlite3_stmt *st, size_t max, struct store_page *page,
                     struct chat_fail *f)
{
    struct store_page_builder b = { 0 };
    int rc, err = 0;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (page->n == max) {
            page->more = true;
            break;
        }
        /* Column bytes are read after the text conversion they measure. */
        const char *user = (const char *)sqlite3_column_text(st, 2);
        size_t ulen = (size_t)sqlite3_column_bytes(st, 2);
        const char *text = (const char *)sqlite3_column_text(st, 3);
        size_t tlen = (size_t)sqlite3_column_bytes(st, 3);
        const char *room = (const char *)sqlite3_column_text(st, 4);
        size_t rlen = (size_t)sqlite3_column_bytes(st, 4);
        if ((err = store_page_add(page, &b, sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                                  user ? user : "", ulen, text ? text : "", tlen,
                                  room ? room : "", rlen, f)) < 0)
            break;
    }
    if (err == 0 && rc != SQLITE_ROW && rc != SQLITE_DONE)
        err = sqlite_fail(s, rc, f, "read messages");
    store_page_done(page, &b);
    return err;
}

static int sq_fetch(struct store *base, const char *room, size_t room_len, int64_t index,
                int limit, int tail, struct store_page *page, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    sqlite3_stmt *st, *meta = s->st[ST_PAGE_META];
    int rc, err = 0;

    memset(page, 0, sizeof *page);
    if ((rc = sqlite_exec_stmt(s, ST_BEGIN_READ)) != SQLITE_OK)
        return sqlite_fail(s, rc, f, "begin read");
    if (tail > 0) {
        st = s->st[ST_TAIL];
        sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, tail);
    } else {
        st = s->st[ST_AFTER];
        sqlite3_bind_text(st, 1, room, (int)room_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, index);
        sqlite3_bind_int(st, 3, limit + 1);
    }
    err = read_rows(s, st, tail > 0 ? (size_t)tail : (size_t)limit, page, f);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (err == 0) {
        sqlite3_bind_text(meta, 1, room, (int)room_len, SQLITE_STATIC);
        if ((rc = sqlite3_step(meta)) == SQLITE_ROW) {
            page->max_index = sqlite3_column_int64(meta, 0);
            page->seen_id = sqlite3_column_int64(meta, 1);
            page->pruned = tail == 0 && index < sqlite3_column_int64(meta, 2);
        } else {
            err = sqlite_fail(s, rc, f, "latest ids");
        }
        sqlite3_reset(meta);
        sqlite3_clear_bindings(meta);
    }
    sqlite_exec_stmt(s, ST_COMMIT);
    if (err < 0) {
        store_page_free(page);
        return err;
    }
    if (page->n > 0)
        page->max_index = page->msgs[page->n - 1].id;
    return 0;
}

static int sq_since(struct store *base, int64_t after, int limit, struct store_page *page,
                struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    sqlite3_stmt *st = s->st[ST_SINCE];
    int err;

    memset(page, 0, sizeof *page);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int(st, 2, limit + 1);
    err = read_rows(s, st, (size_t)limit, page, f);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (err < 0) {
        store_page_free(page);
        return err;
    }
    page->max_index = page->seen_id = page->n ? page->msgs[page->n - 1].id : after;
    return 0;
}

static int sq_data_version(struct store *base, int64_t *v, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    int rc = sqlite_single_int(s, ST_DATA_VERSION, v);
    return rc == SQLITE_OK ? 0 : sqlite_fail(s, rc, f, "data version");
}

static int sq_max_id(struct store *base, int64_t *id, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    int rc = sqlite_single_int(s, ST_MAX_ID, id);
    return rc == SQLITE_OK ? 0 : sqlite_fail(s, rc, f, "max id");
}

static int sq_check(struct store *base, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    int64_t id;
    int rc;

    if (sq_max_id(base, &id, f) < 0)
        return chat_fail(f, CHAT_EUNAVAIL, "database is not readable");
    pthread_mutex_lock(&store_write_lock);
    rc = sqlite_exec_stmt(s, ST_BEGIN_WRITE);
    if (rc == SQLITE_OK)
        sqlite_exec_stmt(s, ST_ROLLBACK);
    pthread_mutex_unlock(&store_write_lock);
    if (rc != SQLITE_OK)
        return chat_fail(f, CHAT_EUNAVAIL, "database is not writable: %s", sqlite3_errstr(rc));
    return 0;
}

/* ---- change notices: inotify on the database's folder (notify.h) ---- */

static int sq_watch(struct store *base, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    (void)f;
    notify_open(&s->notify, sqlite3_db_filename(s->db, "main"));
    return 0;
}

static int sq_changes_fd(struct store *base)
{
    return ((struct sqlite_db *)base)->notify.fd;
}

static bool sq_changes_drain(struct store *base)
{
    return notify_drain(&((struct sqlite_db *)base)->notify);
}

static int sq_recheck_us(struct store *base, bool written, bool changed)
{
    return notify_recheck_us(&((struct sqlite_db *)base)->notify, written, changed);
}

/* Every path that is not a URI another backend claims. */
static bool sq_claims(const char *db)
{
    (void)db;
    return true;
}

const struct store_backend store_sqlite = {
    .name = "sqlite", .claims = sq_claims, .open = sq_open, .close = sq_close,
    .append_tx = sq_append_tx, .fetch = sq_fetch, .since = sq_since,
    .data_version = sq_data_version, .max_id = sq_max_id, .prune_age = sq_prune_age,
    .prune_rooms = sq_prune_rooms, .check = sq_check, .watch = sq_watch,
    .changes_fd = sq_changes_fd, .changes_drain = sq_changes_drain, .recheck_us = sq_recheck_us,
};

static const struct store_backend *backend_of(void)
{
    return &store_sqlite;
}
