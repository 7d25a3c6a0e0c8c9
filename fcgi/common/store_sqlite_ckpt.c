/*
 * store_sqlite_ckpt.c - the checkpoints of a busy writer's WAL, taken off
 * its commits (store_opts.checkpoint_aside).
 *
 * SQLite checkpoints in the connection whose commit found the WAL over
 * its limit: that commit copies the pages back and syncs the WAL and the
 * database file before it returns. For the group committer, every send
 * queued meanwhile waits for those two syncs. Here the commit only kicks
 * a thread, which checkpoints on its own connection while the committer
 * goes on. Once that round is done, the committer's next commit finishes
 * the job itself: it copies only what was written during the round and
 * syncs that little, and the WAL then starts over from its beginning at
 * the next write (a WAL starts over only once all of it was copied, which
 * the thread alone never sees while commits keep coming).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "store_sqlite.h"

struct sqlite_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t kick;
    sqlite3 *db;              /* the thread's own connection */
    bool kicked;              /* a round is asked for, or running (guarded by mu) */
    bool done;                /* a round ended, the committer finishes it (mu) */
    bool stopping;            /* (mu) */
};

static void *ckpt_main(void *arg)
{
    struct sqlite_ckpt *k = arg;
    int rc;

    pthread_mutex_lock(&k->mu);
    for (;;) {
        while (!k->kicked && !k->stopping)
            pthread_cond_wait(&k->kick, &k->mu);
        if (k->stopping)
            break;
        pthread_mutex_unlock(&k->mu);
        /* PASSIVE: copies what no reader still needs, never waits for a writer. */
        rc = sqlite3_wal_checkpoint_v2(k->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            log_warn("checkpoint: %s", sqlite3_errmsg(k->db));
        pthread_mutex_lock(&k->mu);
        k->kicked = false;
        k->done = true;
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/* After each commit of the writer's connection, with the WAL's length in pages. */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sqlite_ckpt *k = arg;
    bool finish = false;

    (void)name;
    if (pages < SQLITE_CKPT_PAGES)
        return SQLITE_OK;
    pthread_mutex_lock(&k->mu);
    if (k->done) {
        k->done = false;
        finish = true;
    } else if (!k->kicked) {
        k->kicked = true;
        pthread_cond_signal(&k->kick);
    }
    pthread_mutex_unlock(&k->mu);
    /*
     * Not complete when a reader still needs a page: the WAL goes on
     * growing, and the next commit kicks another round.
     */
    if (finish)
        sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return SQLITE_OK;
}

int sqlite_ckpt_start(struct sqlite_db *s, const char *pragmas, struct chat_fail *f)
{
    struct sqlite_ckpt *k = calloc(1, sizeof *k);
    int rc;

    if (!k)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->kick, NULL);
    rc = sqlite3_open_v2(sqlite3_db_filename(s->db, "main"), &k->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    /* The same syncs as the writer's own checkpoints would make. */
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(k->db, pragmas, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int err = chat_fail(f, CHAT_EUNAVAIL, "checkpoint connection: %s",
                            k->db ? sqlite3_errmsg(k->db) : sqlite3_errstr(rc));
        sqlite3_close(k->db);
        free(k);
        return err;
    }
    if (pthread_create(&k->thread, NULL, ckpt_main, k) != 0) {
        sqlite3_close(k->db);
        free(k);
        return chat_fail(f, CHAT_EUNAVAIL, "cannot start the checkpoint thread");
    }
    /* Replaces the automatic checkpoint (itself a WAL hook). */
    sqlite3_wal_hook(s->db, on_commit, k);
    s->ckpt = k;
    return 0;
}

void sqlite_ckpt_stop(struct sqlite_db *s)
{
    struct sqlite_ckpt *k = s->ckpt;

    if (!k)
        return;
    sqlite3_wal_hook(s->db, NULL, NULL);
    pthread_mutex_lock(&k->mu);
    k->stopping = true;
    pthread_cond_signal(&k->kick);
    pthread_mutex_unlock(&k->mu);
    pthread_join(k->thread, NULL);
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->kick);
    free(k);
    s->ckpt = NULL;
}
