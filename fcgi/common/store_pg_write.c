/*
 * store_pg_write.c - writes on the PostgreSQL backend: a batch of the group
 * commit as one statement, and retention (see store_pg.c).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "chat_limits.h"
#include "log.h"
#include "store_pg.h"
#include "util.h"


/* ---- writes ---- */

/*
 * A text[] parameter in binary format: one dimension of n strings (a NULL
 * pointer is SQL NULL), each with its length, so that no string depends
 * on a NUL. Returns its length, or -1 out of memory; free *out.
 */
static int text_array(const char *const *vals, const size_t *lens, size_t n, char **out)
{
    size_t size = 20;
    char *b, *p;

    for (size_t i = 0; i < n; i++)
        size += 4 + (vals[i] ? lens[i] : 0);
    if (size > INT32_MAX || !(b = malloc(size)))
        return -1;
    p = b;
#define PUT32(v) do { uint32_t v_ = htonl((uint32_t)(v)); memcpy(p, &v_, 4); p += 4; } while (0)
    PUT32(1);                  /* dimensions */
    PUT32(0);                  /* a NULL flag; the server works it out */
    PUT32(OID_TEXT);
    PUT32(n);                  /* this dimension's length, */
    PUT32(1);                  /* and its lower bound */
    for (size_t i = 0; i < n; i++) {
        PUT32(vals[i] ? (int32_t)lens[i] : -1);
        if (vals[i]) {
            memcpy(p, vals[i], lens[i]);
            p += lens[i];
        }
    }
#undef PUT32
    *out = b;
    return (int)size;
}

/* Whether the cell (r, row, col) holds exactly s[0..len), or is NULL when s is. */
static bool cell_is(const PGresult *r, int row, int col, const char *s, size_t len)
{
    if (PQgetisnull(r, row, col))
        return s == NULL;
    return s && (size_t)PQgetlength(r, row, col) == len && memcmp(PQgetvalue(r, row, col), s, len) == 0;
}

/* A cid that another node committed while we inserted: its first row. */
static int find_cid(struct pg_db *s, const struct valid_send *m, struct store_sent *out,
                    struct chat_fail *f)
{
    const char *vals[2] = { m->room, m->cid };
    const int lens[2] = { (int)m->room_len, (int)m->cid_len }, fmts[2] = { 1, 1 };
    int err;
    PGresult *r = pgs_run(s, ST_FIND_CID, vals, lens, fmts, f, &err);

    if (!r)
        return err;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return chat_fail(f, CHAT_EUNAVAIL, "the message with this cid was deleted meanwhile, send again");
    }
    out->id = pgs_col_int(r, 0, 0);
    out->ts = pgs_col_int(r, 0, 1);
    out->duplicate = true;
    PQclear(r);
    return 0;
}

/*
 * The connection broke with the batch sent and its result unanswered: the
 * server may have committed it. The client is told so: a retry with the
 * same cid stores nothing twice.
 */
static int unsure(struct pg_db *s, struct chat_fail *f)
{
    pgs_drop(s, "lost while committing");
    return chat_fail(f, CHAT_EUNAVAIL, "database connection lost while storing: the message may be "
                     "stored; send it again with the same cid");
}

/*
 * Matches the result of ST_APPEND (or ST_APPEND_PLAIN) to the items that were sent (want[i]:
 * not a repeat of an earlier cid of the batch; item_of[k], the item sent
 * k-th): the rows of cids stored before (k + 1, id, ts), and the new rows
 * in id order (NULL, id, ts, room, user, text, cid). Returns whether a cid was stored by another node
 * meanwhile (that item's id is left 0).
 */
static bool take_rows(const PGresult *r, struct store_item **items, size_t n, const bool *want,
                      const size_t *item_of, size_t sent)
{
    int rows = PQntuples(r), row_of[CHAT_BATCH_MAX];
    size_t fresh = 0, at = 0;
    bool raced = false, used[CHAT_BATCH_MAX] = { false };

    for (size_t i = 0; i < n; i++)
        items[i]->sent = (struct store_sent){ 0 };
    for (int row = 0; row < rows; row++) {
        int64_t k = pgs_col_int(r, row, 0) - 1;
        if (PQgetisnull(r, row, 0)) {
            if (fresh < CHAT_BATCH_MAX)
                row_of[fresh++] = row;
        } else if (k >= 0 && (size_t)k < sent) {
            /* A cid stored before: its first row is the answer. */
            items[item_of[k]]->sent = (struct store_sent){ .id = pgs_col_int(r, row, 1),
                                                  .ts = pgs_col_int(r, row, 2), .duplicate = true };
        }
    }
    /*
     * The new rows, in the order they were inserted, which is the items':
     * each item takes the next unused row with its fields (a scan from
     * there, so that a row missing, a cid raced, shifts nothing).
     */
    for (size_t i = 0; i < n; i++) {
        const struct valid_send *m = items[i]->msg;
        bool found = false;
        if (!want[i] || items[i]->sent.id)
            continue;
        for (size_t t = 0; t < fresh && !found; t++) {
            size_t k = (at + t) % fresh;
            int row = row_of[k];
            found = !used[k] && cell_is(r, row, 5, m->text, m->text_len) &&
                    cell_is(r, row, 3, m->room, m->room_len) && cell_is(r, row, 6, m->cid, m->cid_len) &&
                    cell_is(r, row, 4, m->user ? m->user : "", m->user ? m->user_len : 0);
            if (found) {
                used[k] = true;
                items[i]->sent = (struct store_sent){ .id = pgs_col_int(r, row, 1),
                                                      .ts = pgs_col_int(r, row, 2) };
                at = k + 1;
            }
        }
        if (!found && m->cid)
            raced = true;      /* its cid went in from elsewhere meanwhile: id left 0 */
        else if (!found)
            items[i]->err = chat_fail(&items[i]->fail, CHAT_EINTERNAL, "database error (no row stored)");
    }
    return raced;
}

/* Rolls back what is left of a transaction of pgs_write_ahead (none: a no-op). */
static void end_turn(struct pg_db *s)
{
    s->ahead = false;
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK && PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        PQclear(PQexec(s->conn, "ROLLBACK"));
}

/*
 * The batch's statement and the COMMIT of the transaction pgs_write_ahead
 * began, sent together (libpq's pipeline: one round trip while the lock is
 * held). Returns the statement's result, or the COMMIT's when the statement
 * succeeded and the COMMIT did not; the transaction is over either way
 * (rolled back after a failure), or the connection is broken.
 */
static PGresult *insert_commit(struct pg_db *s, const char *name, const char *const *arr,
                               const int *lens, const int *fmts)
{
    PGresult *r = NULL, *c = NULL, *x;
    const char *sev;
    bool sent;

    sent = PQenterPipelineMode(s->conn) &&
           PQsendQueryPrepared(s->conn, name, 4, arr, lens, fmts, 0) &&
           PQsendQueryParams(s->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) &&
           PQpipelineSync(s->conn);
    /* Each query's result then NULL; the sync's last. */
    for (int i = 0; sent && i < 2; i++) {
        x = PQgetResult(s->conn);
        if (i == 0)
            r = x;
        else
            c = x;
        if (!x)
            break;
        while ((x = PQgetResult(s->conn)))
            PQclear(x);
    }
    while (sent && (x = PQgetResult(s->conn))) {
        bool sync = PQresultStatus(x) == PGRES_PIPELINE_SYNC;
        PQclear(x);
        if (sync)
            break;
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQresultStatus(c) != PGRES_COMMAND_OK) {
        /* Stored, then the COMMIT failed: nothing of it is committed, if the server said why. */
        PQclear(r);
        r = c;
        c = NULL;
    }
    PQclear(c);
    if (!r)
        r = PQmakeEmptyPGresult(NULL, PGRES_FATAL_ERROR);
    sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (!sent || !PQexitPipelineMode(s->conn) ||
        (PQresultStatus(r) != PGRES_TUPLES_OK && !(sev && !strcmp(sev, "ERROR")))) {
        /*
         * Whether the COMMIT went is unknown (a FATAL or PANIC, say while
         * a synchronous standby was awaited, or no answer): the caller
         * says so (unsure). An ERROR ended the transaction without it.
         */
        pgs_drop(s, "lost while committing");
        return r;
    }
    end_turn(s);
    return r;
}

/*
 * The group committer's wait for its turn, before it takes its batch:
 * a transaction that holds the lock of the id counter (schema-pg.sql),
 * which every node's writer takes. While another node commits, this
 * node's sends keep queueing, and go in one batch once the turn is ours,
 * rather than the batch taken before the wait and another after it.
 */
bool pgs_write_ahead(struct store *base)
{
    struct pg_db *s = (struct pg_db *)base;
    struct chat_fail f;
    PGresult *r;

    if (s->ahead || pgs_ready(s, &f) < 0)
        return s->ahead;
    r = PQexec(s->conn, "BEGIN; SELECT pg_advisory_xact_lock(" PG_ID_LOCK ")");
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        PQclear(r);
        return s->ahead = true;
    }
    /* Refused (the lock held past --busy-ms, say): so is the batch, without a second wait. */
    s->ahead_err = pgs_fail_of(s, r, &s->ahead_fail, "wait for the turn to write");
    end_turn(s);
    return false;
}

/*
 * Stores items[0..n) in one statement, so one round trip and one
 * transaction (the server's implicit one, committed before it answers; or
 * the one pgs_write_ahead began, committed in the same round trip): the
 * messages as four text[] parameters (room, user, text, cid), a cid
 * repeated within the batch sent once. Returns 0, or a negative code with
 * *f set (nothing of the batch is stored; *begun tells that the server ran
 * the statement and refused it, so that the failure may be one message's).
 */
int pgs_append_tx(struct store *base, struct store_item **items, size_t n,
                        struct chat_fail *f, bool *begun)
{
    struct pg_db *s = (struct pg_db *)base;
    const char *col[4][CHAT_BATCH_MAX];
    size_t len[4][CHAT_BATCH_MAX];
    bool want[CHAT_BATCH_MAX];
    size_t sent = 0, item_of[CHAT_BATCH_MAX];
    bool any_cid = false;
    char *arr[4] = { NULL };
    int lens[4], err = 0;
    const int fmts[4] = { 1, 1, 1, 1 };
    char name[8];
    PGresult *r;

    *begun = false;
    if (s->ahead_err) {
        err = s->ahead_err;
        *f = s->ahead_fail;
        s->ahead_err = 0;
    } else if (n > CHAT_BATCH_MAX) {
        err = chat_fail(f, CHAT_EINTERNAL, "batch of %zu messages, more than %d", n, CHAT_BATCH_MAX);
    }
    for (size_t i = 0; err == 0 && i < n; i++) {
        const struct valid_send *m = items[i]->msg;
        want[i] = true;
        for (size_t j = 0; m->cid && j < i && want[i]; j++) {
            const struct valid_send *e = items[j]->msg;
            want[i] = !(e->cid && e->cid_len == m->cid_len && e->room_len == m->room_len &&
                        !memcmp(e->cid, m->cid, m->cid_len) && !memcmp(e->room, m->room, m->room_len));
        }
        if (!want[i])
            continue;
        item_of[sent] = i;
        any_cid |= m->cid != NULL;
        col[0][sent] = m->room; len[0][sent] = m->room_len;
        col[1][sent] = m->user ? m->user : ""; len[1][sent] = m->user ? m->user_len : 0;
        col[2][sent] = m->text; len[2][sent] = m->text_len;
        col[3][sent] = m->cid; len[3][sent] = m->cid_len;
        sent++;
    }
    for (int c = 0; err == 0 && c < 4; c++)
        if ((lens[c] = text_array(col[c], len[c], sent, &arr[c])) < 0)
            err = chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    if (err == 0 && (err = pgs_ready(s, f)) == 0) {
        pgs_stmt_name(any_cid ? ST_APPEND : ST_APPEND_PLAIN, name);
        if (s->ahead)
            r = insert_commit(s, name, (const char *const *)arr, lens, fmts);
        else
            r = PQexecPrepared(s->conn, name, 4, (const char *const *)arr, lens, fmts, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK) {
            /* Committed. A cid that another node stored first: that row is the answer. */
            bool raced = take_rows(r, items, n, want, item_of, sent);
            PQclear(r);
            for (size_t i = 0; i < n; i++) {
                if (!want[i]) {
                    /* A cid repeated in the batch: its first's answer. */
                    const struct valid_send *m = items[i]->msg;
                    for (size_t j = 0; j < i; j++) {
                        const struct valid_send *e = items[j]->msg;
                        if (want[j] && e->cid && e->cid_len == m->cid_len && e->room_len == m->room_len &&
                            !memcmp(e->cid, m->cid, m->cid_len) && !memcmp(e->room, m->room, m->room_len)) {
                            items[i]->sent = items[j]->sent;
                            items[i]->sent.duplicate = true;
                            items[i]->err = items[j]->err;
                            items[i]->fail = items[j]->fail;
                            break;
                        }
                    }
                } else if (raced && items[i]->sent.id == 0 && items[i]->err == 0 &&
                           (items[i]->err = find_cid(s, items[i]->msg, &items[i]->sent,
                                                     &items[i]->fail)) < 0) {
                    log_warn("cid race: %s", items[i]->fail.msg);
                }
            }
        } else if (!r || !s->conn || PQstatus(s->conn) != CONNECTION_OK) {
            PQclear(r);
            err = unsure(s, f);
        } else {
            /* The server refused it, and nothing of it is stored: maybe one message's fault. */
            *begun = PQresultErrorField(r, PG_DIAG_SQLSTATE) != NULL;
            err = pgs_fail_of(s, r, f, "insert");
        }
    }
    for (int c = 0; c < 4; c++)
        free(arr[c]);
    if (s->ahead)
        end_turn(s);           /* failed before the statement went: the turn is given back */
    return err;
}

/* ---- retention: each batch one statement, so its own short transaction ---- */

int pgs_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char a[24], b[24];
    const char *vals[2] = { a, b };
    int64_t edge, n;
    int err;
    PGresult *r;

    snprintf(a, sizeof a, "%lld", (long long)before_ms);
    if (!(r = pgs_run(s, ST_AGE_EDGE, vals, NULL, NULL, f, &err)))
        return err;
    edge = pgs_col_int(r, 0, 0);
    PQclear(r);
    snprintf(a, sizeof a, "%lld", (long long)edge);
    snprintf(b, sizeof b, "%d", batch);
    if (!(r = pgs_run(s, ST_AGE_BATCH, vals, NULL, NULL, f, &err)))
        return err;
    n = pgs_col_int(r, 0, 0);
    PQclear(r);
    return (int)n;
}

int pgs_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char k[24], e[24], b[24];
    int err, total = 0;
    PGresult *rooms, *r;

    /* The rooms first, in one result: the deletes below run on their own. */
    if (!(rooms = pgs_run(s, ST_ROOMS, NULL, NULL, NULL, f, &err)))
        return err;
    snprintf(k, sizeof k, "%d", keep);
    snprintf(b, sizeof b, "%d", batch);
    for (int i = 0; i < PQntuples(rooms) && total >= 0; i++) {
        const char *room = PQgetvalue(rooms, i, 0);
        int room_len = PQgetlength(rooms, i, 0);
        const char *ev[2] = { room, k }, *bv[3] = { room, e, b };
        const int lens[3] = { room_len, 0, 0 }, fmts[3] = { 1, 0, 0 };
        if (!(r = pgs_run(s, ST_COUNT_EDGE, ev, lens, fmts, f, &err))) {
            total = err;
            break;
        }
        int64_t edge_id = PQntuples(r) ? pgs_col_int(r, 0, 0) : 0;
        PQclear(r);
        if (edge_id == 0)
            continue;          /* no more than keep messages */
        snprintf(e, sizeof e, "%lld", (long long)edge_id);
        for (;;) {
            if (!(r = pgs_run(s, ST_ROOM_BATCH, bv, lens, fmts, f, &err))) {
                total = err;
                break;
            }
            int got = (int)pgs_col_int(r, 0, 0);
            PQclear(r);
            total += got;
            if (got < batch)
                break;
        }
    }
    PQclear(rooms);
    return total;
}

