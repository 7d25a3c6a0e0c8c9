/*
 * store_pg_write.c - writes on the PostgreSQL backend: a batch of the group
 * commit as one pipeline, and retention (see store_pg.c).
 */
#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
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
 * The next result of a pipeline, with the NULL that ends a query's results
 * consumed. NULL when the connection broke.
 */
static PGresult *pipe_result(PGconn *c)
{
    PGresult *r = PQgetResult(c), *end;

    if (r && PQresultStatus(r) != PGRES_PIPELINE_SYNC && (end = PQgetResult(c)) != NULL)
        PQclear(end);   /* a query has one result: cannot happen */
    return r;
}

/* Sends one statement of a pipeline: text parameters in binary, with lengths. */
static bool pipe_send(struct pg_db *s, enum stmt_id id, const char *const *vals, const int *lens,
                      const int *fmts)
{
    char name[8];
    pgs_stmt_name(id, name);
    return PQsendQueryPrepared(s->conn, name, pgs_stmts[id].nparams, vals, lens, fmts, 0) == 1;
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
 * The connection broke with the batch sent and its COMMIT unanswered: the
 * server may have committed it (its answers are sent at the end). The
 * client is told so: a retry with the same cid stores nothing twice.
 */
static int unsure(struct pg_db *s, struct chat_fail *f)
{
    pgs_drop(s, "lost while committing");
    return chat_fail(f, CHAT_EUNAVAIL, "database connection lost while storing: the message may be "
                     "stored; send it again with the same cid");
}

/*
 * Stores items[0..n) in one transaction, as one pipeline: BEGIN, one
 * statement per message, COMMIT, then the results. Returns 0, or a
 * negative code with *f set (nothing of the batch is stored; *begun tells
 * whether BEGIN had succeeded, so that a failure may be one message's).
 */
int pgs_append_tx(struct store *base, struct store_item **items, size_t n,
                        struct chat_fail *f, bool *begun)
{
    struct pg_db *s = (struct pg_db *)base;
    bool raced = false;
    int err = 0;
    PGresult *r;

    *begun = false;
    if ((err = pgs_ready(s, f)) < 0)
        return err;
    if (!PQenterPipelineMode(s->conn))
        return pgs_fail_of(s, NULL, f, "pipeline");
    bool sent = pipe_send(s, ST_BEGIN, NULL, NULL, NULL);
    for (size_t i = 0; sent && i < n; i++) {
        const struct valid_send *m = items[i]->msg;
        const char *vals[4] = { m->room, m->user ? m->user : "", m->text, m->cid };
        const int lens[4] = { (int)m->room_len, m->user ? (int)m->user_len : 0, (int)m->text_len,
                              (int)m->cid_len };
        const int fmts[4] = { 1, 1, 1, 1 };
        sent = pipe_send(s, ST_APPEND, vals, lens, fmts);
    }
    sent = sent && pipe_send(s, ST_COMMIT, NULL, NULL, NULL) && PQpipelineSync(s->conn) == 1;
    if (!sent) {
        err = pgs_fail_of(s, NULL, f, "send batch");
        return err;
    }
    /* BEGIN, the n messages, COMMIT, then the sync. */
    for (size_t q = 0; q < n + 3; q++) {
        if (!(r = pipe_result(s->conn))) {
            if (err == 0)
                err = unsure(s, f);
            return err;        /* the connection is gone */
        }
        ExecStatusType st = PQresultStatus(r);
        if (q == n + 2) {
            PQclear(r);        /* the sync */
            break;
        }
        if (st == PGRES_PIPELINE_ABORTED || err < 0) {
            PQclear(r);        /* after the failure: skipped */
        } else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
            /* An error before COMMIT aborts the transaction; one of COMMIT's own may not have. */
            err = pgs_fail_of(s, r, f, q == 0 ? "begin" : q == n + 1 ? "commit" : "insert");
            if (!s->conn)
                return q == n + 1 ? unsure(s, f) : err;
        } else {
            if (q == 0)
                *begun = true;
            else if (q <= n) {
                struct store_sent *out = &items[q - 1]->sent;
                out->duplicate = false;
                if (PQntuples(r) == 0) {
                    raced = true;
                    out->id = 0;
                } else {
                    out->id = pgs_col_int(r, 0, 0);
                    out->ts = pgs_col_int(r, 0, 1);
                    out->duplicate = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
                }
            }
            PQclear(r);
        }
    }
    if (!PQexitPipelineMode(s->conn)) {
        if (err == 0)
            err = pgs_fail_of(s, NULL, f, "pipeline end");
        else
            pgs_drop(s, "pipeline end");
        return err;
    }
    if (err < 0) {
        if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
            struct chat_fail ignored;
            PGresult *rb = pgs_run(s, ST_ROLLBACK, NULL, NULL, NULL, &ignored, &(int){ 0 });
            PQclear(rb);
        }
        return err;
    }
    /* Committed. A cid that another node stored first: that row is the answer. */
    for (size_t i = 0; raced && i < n; i++)
        if (items[i]->sent.id == 0 && (items[i]->err = find_cid(s, items[i]->msg, &items[i]->sent,
                                                                 &items[i]->fail)) < 0)
            log_warn("cid race: %s", items[i]->fail.msg);
    return 0;
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

