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
 *
 * While a round runs the WAL grows with the commits. Past CKPT_CAP_PAGES
 * (a slow disk) the committer waits for the round to end and finishes it,
 * as SQLite's own checkpoint would have made it wait; and the WAL file is
 * cut back to CKPT_KEEP_BYTES when it starts over, so that one slow round
 * does not leave it large.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"
#include "store_sqlite.h"

#define CKPT_CAP_PAGES  (4 * SQLITE_CKPT_PAGES)
#define CKPT_KEEP_BYTES (64L << 20)

struct sqlite_ckpt {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t kick;      /* a round is asked for, or the thread stops */
    pthread_cond_t ended;     /* a round ended */
    sqlite3 *db;              /* the thread's own connection */
    bool kicked;              /* a round is asked for, or running (guarded by mu) */
    bool done;                /* a round ended, the committer finishes it (mu) */
    bool stopping;            /* (mu) */
    bool failing;             /* the last checkpoint failed (mu): said once */
    bool below;               /* the writer's only: a commit found the WAL under
                                 the limit since the last kick (it started over) */
};

/* Says when checkpoints start failing and when they work again, not each time. */
static void note_result(struct sqlite_ckpt *k, sqlite3 *db, int rc)
{
    bool failed = rc != SQLITE_OK && rc != SQLITE_BUSY;   /* BUSY: another checkpoints */
    bool was;

    pthread_mutex_lock(&k->mu);
    was = k->failing;
    k->failing = failed;
    pthread_mutex_unlock(&k->mu);
    if (failed && !was)
        log_warn("WAL checkpoint failed: %s (trying again as the WAL grows)", sqlite3_errmsg(db));
    else if (!failed && was)
        log_info("WAL checkpoints work again");
}

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
        note_result(k, k->db, rc);
        pthread_mutex_lock(&k->mu);
        k->kicked = false;
        k->done = true;
        pthread_cond_broadcast(&k->ended);
    }
    pthread_mutex_unlock(&k->mu);
    return NULL;
}

/*
 * After each commit of the writer's connection, with the WAL's length in
 * pages; in the committing thread, with the process's write lock held.
 */
static int on_commit(void *arg, sqlite3 *db, const char *name, int pages)
{
    struct sqlite_ckpt *k = arg;
    bool finish = false;

    (void)name;
    if (pages < SQLITE_CKPT_PAGES) {
        k->below = true;
        return SQLITE_OK;
    }
    pthread_mutex_lock(&k->mu);
    /* The WAL started over since that round: it copied everything, nothing to finish. */
    if (k->done && k->below)
        k->done = false;
    /* A slow round: wait for it rather than let the WAL grow on. */
    while (k->kicked && pages >= CKPT_CAP_PAGES && !k->stopping)
        pthread_cond_wait(&k->ended, &k->mu);
    if (k->done) {
        k->done = false;
        finish = true;
    } else if (!k->kicked) {
        k->kicked = true;
        k->below = false;
        pthread_cond_signal(&k->kick);
    }
    pthread_mutex_unlock(&k->mu);
    /*
     * Not complete when a reader still needs a page: the WAL goes on
     * growing, and the next commit kicks another round.
     */
    if (finish)
        note_result(k, db, sqlite3_wal_checkpoint_v2(db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL));
    return SQLITE_OK;
}

static void ckpt_free(struct sqlite_ckpt *k)
{
    sqlite3_close(k->db);
    pthread_mutex_destroy(&k->mu);
    pthread_cond_destroy(&k->kick);
    pthread_cond_destroy(&k->ended);
    free(k);
}

int sqlite_ckpt_start(struct sqlite_db *s, const char *pragmas, int busy_ms, struct chat_fail *f)
{
    struct sqlite_ckpt *k = calloc(1, sizeof *k);
    char limit[64];
    int rc, err;

    if (!k)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    pthread_mutex_init(&k->mu, NULL);
    pthread_cond_init(&k->kick, NULL);
    pthread_cond_init(&k->ended, NULL);
    rc = sqlite3_open_v2(sqlite3_db_filename(s->db, "main"), &k->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(k->db, busy_ms);
        /* The same syncs as the writer's own checkpoints would make. */
        rc = sqlite3_exec(k->db, pragmas, NULL, NULL, NULL);
    }
    snprintf(limit, sizeof limit, "PRAGMA journal_size_limit = %ld", CKPT_KEEP_BYTES);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, limit, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        err = chat_fail(f, CHAT_EUNAVAIL, "checkpoint connection: %s", sqlite3_errstr(rc));
        ckpt_free(k);
        return err;
    }
    if (pthread_create(&k->thread, NULL, ckpt_main, k) != 0) {
        ckpt_free(k);
        return chat_fail(f, CHAT_EUNAVAIL, "cannot start the checkpoint thread");
    }
    pthread_setname_np(k->thread, "checkpoint");
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
    /* A round under way ends first: its copy and two syncs. */
    pthread_join(k->thread, NULL);
    ckpt_free(k);
    s->ckpt = NULL;
}
