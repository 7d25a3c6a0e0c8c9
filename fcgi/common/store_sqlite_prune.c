/*
 * store_sqlite_prune.c - retention on the SQLite backend: small batches of
 * deletes, each in its own short write transaction, noting per room the
 * largest id deleted (for page.pruned).
 */
#include <stdlib.h>
#include <string.h>

#include "chat_limits.h"
#include "store_sqlite.h"

/*
 * Runs one batch delete (st bound already, the batch size last), notes the
 * largest id deleted per room, all in one short write transaction. Returns
 * the rows deleted, or a negative code.
 */
static int prune_batch(struct sqlite_db *s, sqlite3_stmt *st, struct chat_fail *f)
{
    sqlite3_stmt *note = s->st[ST_NOTE_PRUNED];
    int rc, n = 0, err = 0;

    pthread_mutex_lock(&store_write_lock);
    if ((rc = sqlite_exec_stmt(s, ST_BEGIN_WRITE)) != SQLITE_OK) {
        err = sqlite_fail(s, rc, f, "begin retention");
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        sqlite3_bind_text(note, 1, (const char *)sqlite3_column_text(st, 1),
                          sqlite3_column_bytes(st, 1), SQLITE_TRANSIENT);
        sqlite3_bind_int64(note, 2, sqlite3_column_int64(st, 0));
        int nrc = sqlite3_step(note);
        sqlite3_reset(note);
        sqlite3_clear_bindings(note);
        if (nrc != SQLITE_DONE) {
            rc = nrc;
            break;
        }
        n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE || (rc = sqlite_exec_stmt(s, ST_COMMIT)) != SQLITE_OK) {
        err = sqlite_fail(s, rc, f, "retention");
        sqlite_exec_stmt(s, ST_ROLLBACK);
    }
out:
    pthread_mutex_unlock(&store_write_lock);
    return err < 0 ? err : n;
}

int sq_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    int64_t edge = 0;
    int rc;

    /* Found in a read snapshot, outside the write lock: deletes go by id. */
    sqlite3_bind_int64(s->st[ST_AGE_EDGE], 1, before_ms);
    if ((rc = sqlite_single_int(s, ST_AGE_EDGE, &edge)) != SQLITE_OK)
        return sqlite_fail(s, rc, f, "retention edge");
    sqlite3_bind_int64(s->st[ST_AGE_BATCH], 1, edge);
    sqlite3_bind_int(s->st[ST_AGE_BATCH], 2, batch);
    return prune_batch(s, s->st[ST_AGE_BATCH], f);
}

int sq_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f)
{
    struct sqlite_db *s = (struct sqlite_db *)base;
    sqlite3_stmt *rooms = s->st[ST_ROOMS], *edge = s->st[ST_COUNT_EDGE];
    char (*names)[CHAT_NAME_MAX + 1] = NULL;
    size_t n = 0, cap = 0;
    int rc, total = 0;

    /* The rooms first: the deletes below must not run under this read. */
    while ((rc = sqlite3_step(rooms)) == SQLITE_ROW) {
        int len = sqlite3_column_bytes(rooms, 0);
        if (len > CHAT_NAME_MAX)
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *nn = realloc(names, ncap * sizeof *names);
            if (!nn) {
                sqlite3_reset(rooms);
                free(names);
                return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
            }
            names = nn;
            cap = ncap;
        }
        memcpy(names[n], sqlite3_column_text(rooms, 0), (size_t)len);
        names[n++][len] = '\0';
    }
    sqlite3_reset(rooms);
    for (size_t i = 0; i < n && total >= 0; i++) {
        int64_t edge_id = 0;
        sqlite3_bind_text(edge, 1, names[i], -1, SQLITE_STATIC);
        sqlite3_bind_int(edge, 2, keep);
        rc = sqlite_single_int(s, ST_COUNT_EDGE, &edge_id);
        if (rc != SQLITE_OK || edge_id == 0)
            continue;            /* no more than keep messages */
        for (;;) {
            sqlite3_bind_text(s->st[ST_ROOM_BATCH], 1, names[i], -1, SQLITE_STATIC);
            sqlite3_bind_int64(s->st[ST_ROOM_BATCH], 2, edge_id);
            sqlite3_bind_int(s->st[ST_ROOM_BATCH], 3, batch);
            int got = prune_batch(s, s->st[ST_ROOM_BATCH], f);
            if (got < 0) {
                total = got;
                break;
            }
            total += got;
            if (got < batch)
                break;
        }
    }
    free(names);
    return total;
}

