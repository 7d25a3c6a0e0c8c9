/*
 * store_pg_ops.c - the statements of the PostgreSQL backend and what runs
 * them: the group commit's pipeline, the one-snapshot reads, the health
 * check and retention (store_pg.c holds the connections).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store_pg.h"

/*
 * The page reads return id, ts, user, text, room, then (fetch) the room's
 * latest id, the largest id of any room and retention's mark, with one row
 * of NULL messages when none matched, all from the statement's snapshot.
 */
#define PAGE_COLS "m.id, m.ts, m.\"user\", m.text, m.room"
#define PAGE_MARKS \
    " FROM (SELECT (SELECT coalesce(max(id), 0) FROM messages WHERE room = $1) AS latest," \
    "              (SELECT coalesce(max(id), 0) FROM messages) AS seen," \
    "              (SELECT coalesce(max(upto), 0) FROM pruned WHERE room = $1) AS upto) k"

const struct pg_stmt pg_stmts[ST_COUNT] = {
    [ST_BEGIN]    = { "begin", "BEGIN", 0, { 0 } },
    [ST_COMMIT]   = { "commit", "COMMIT", 0, { 0 } },
    [ST_ROLLBACK] = { "rollback", "ROLLBACK", 0, { 0 } },
    /*
     * One message: its cid's first row when the room has one (earlier in
     * the batch too), else the new row. A cid committed meanwhile by
     * another node makes the insert do nothing: no row, see append_tx.
     */
    [ST_APPEND]   = { "insert", "WITH dup AS (SELECT id, ts FROM messages WHERE room = $1 AND cid = $4),"
                      " ins AS (INSERT INTO messages (room, \"user\", text, cid)"
                      "         SELECT $1, $2, $3, $4 WHERE NOT EXISTS (SELECT FROM dup)"
                      "         ON CONFLICT (room, cid) DO NOTHING RETURNING id, ts)"
                      " SELECT id, ts, false FROM ins UNION ALL SELECT id, ts, true FROM dup",
                      4, { OID_TEXT, OID_TEXT, OID_TEXT, OID_TEXT } },
    [ST_FIND_CID] = { "find cid", "SELECT id, ts FROM messages WHERE room = $1 AND cid = $2",
                      2, { OID_TEXT, OID_TEXT } },
    [ST_AFTER]    = { "read messages", "SELECT " PAGE_COLS ", k.latest, k.seen, k.upto" PAGE_MARKS
                      " LEFT JOIN LATERAL (SELECT id, ts, \"user\", text, room FROM messages"
                      "   WHERE room = $1 AND id > $2 ORDER BY id LIMIT $3) m ON true ORDER BY m.id",
                      3, { OID_TEXT, OID_INT8, OID_INT4 } },
    [ST_TAIL]     = { "read the tail", "SELECT " PAGE_COLS ", k.latest, k.seen, k.upto" PAGE_MARKS
                      " LEFT JOIN LATERAL (SELECT id, ts, \"user\", text, room FROM messages"
                      "   WHERE room = $1 ORDER BY id DESC LIMIT $2) m ON true ORDER BY m.id",
                      2, { OID_TEXT, OID_INT4 } },
    [ST_SINCE]    = { "read new messages", "SELECT id, ts, \"user\", text, room FROM messages"
                      " WHERE id > $1 ORDER BY id LIMIT $2", 2, { OID_INT8, OID_INT4 } },
    [ST_MAX_ID]   = { "max id", "SELECT coalesce(max(id), 0) FROM messages", 0, { 0 } },
    [ST_COUNTER]  = { "id counter", "SELECT last FROM message_ids", 0, { 0 } },
    /* Readable, and writable: not a standby, not read-only by default. */
    [ST_CHECK]    = { "check", "SELECT last, current_setting('transaction_read_only') FROM message_ids",
                      0, { 0 } },
    /* Retention: the first id young enough to keep, a walk from the oldest row. */
    [ST_AGE_EDGE] = { "retention edge", "SELECT coalesce((SELECT id FROM messages WHERE ts >= $1 ORDER BY id LIMIT 1),"
                      " (SELECT coalesce(max(id), 0) + 1 FROM messages))", 1, { OID_INT8 } },
    /* A batch deleted and noted per room in one statement (its own transaction). */
    [ST_AGE_BATCH] = { "retention", "WITH gone AS (DELETE FROM messages WHERE id IN"
                       "   (SELECT id FROM messages WHERE id < $1 ORDER BY id LIMIT $2) RETURNING id, room),"
                       " noted AS (INSERT INTO pruned (room, upto) SELECT room, max(id) FROM gone GROUP BY room"
                       "   ON CONFLICT (room) DO UPDATE SET upto = greatest(pruned.upto, excluded.upto))"
                       " SELECT count(*) FROM gone", 2, { OID_INT8, OID_INT4 } },
    [ST_ROOMS]    = { "rooms", "SELECT DISTINCT room FROM messages", 0, { 0 } },
    [ST_COUNT_EDGE] = { "retention edge", "SELECT id FROM messages WHERE room = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
                        2, { OID_TEXT, OID_INT4 } },
    [ST_ROOM_BATCH] = { "retention", "WITH gone AS (DELETE FROM messages WHERE id IN"
                        "   (SELECT id FROM messages WHERE room = $1 AND id <= $2 ORDER BY id LIMIT $3)"
                        "   RETURNING id, room),"
                        " noted AS (INSERT INTO pruned (room, upto) SELECT room, max(id) FROM gone GROUP BY room"
                        "   ON CONFLICT (room) DO UPDATE SET upto = greatest(pruned.upto, excluded.upto))"
                        " SELECT count(*) FROM gone", 3, { OID_TEXT, OID_INT8, OID_INT4 } },
    [ST_LISTEN]   = { "listen", "LISTEN chat", 0, { 0 } },
};

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
    pg_stmt_name(id, name);
    return PQsendQueryPrepared(s->conn, name, pg_stmts[id].nparams, vals, lens, fmts, 0) == 1;
}

/* A cid that another node committed while we inserted: its first row. */
static int find_cid(struct pg_db *s, const struct valid_send *m, struct store_sent *out,
                    struct chat_fail *f)
{
    const char *vals[2] = { m->room, m->cid };
    const int lens[2] = { (int)m->room_len, (int)m->cid_len }, fmts[2] = { 1, 1 };
    int err;
    PGresult *r = pg_run(s, ST_FIND_CID, vals, lens, fmts, f, &err);

    if (!r)
        return err;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return chat_fail(f, CHAT_EUNAVAIL, "the message with this cid was deleted meanwhile, send again");
    }
    out->id = pg_col_int(r, 0, 0);
    out->ts = pg_col_int(r, 0, 1);
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
    pg_drop(s, "lost while committing");
    return chat_fail(f, CHAT_EUNAVAIL, "database connection lost while storing: the message may be "
                     "stored; send it again with the same cid");
}

/*
 * Stores items[0..n) in one transaction, as one pipeline: BEGIN, one
 * statement per message, COMMIT, then the results. Returns 0, or a
 * negative code with *f set (nothing of the batch is stored; *begun tells
 * whether BEGIN had succeeded, so that a failure may be one message's).
 */
int pg_append_tx(struct store *base, struct store_item **items, size_t n,
                        struct chat_fail *f, bool *begun)
{
    struct pg_db *s = (struct pg_db *)base;
    bool raced = false;
    int err = 0;
    PGresult *r;

    *begun = false;
    if ((err = pg_ready(s, f)) < 0)
        return err;
    if (!PQenterPipelineMode(s->conn))
        return pg_fail(s, NULL, f, "pipeline");
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
        err = pg_fail(s, NULL, f, "send batch");
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
            err = pg_fail(s, r, f, q == 0 ? "begin" : q == n + 1 ? "commit" : "insert");
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
                    out->id = pg_col_int(r, 0, 0);
                    out->ts = pg_col_int(r, 0, 1);
                    out->duplicate = strcmp(PQgetvalue(r, 0, 2), "t") == 0;
                }
            }
            PQclear(r);
        }
    }
    if (!PQexitPipelineMode(s->conn)) {
        if (err == 0)
            err = pg_fail(s, NULL, f, "pipeline end");
        else
            pg_drop(s, "pipeline end");
        return err;
    }
    if (err < 0) {
        if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
            struct chat_fail ignored;
            PGresult *rb = pg_run(s, ST_ROLLBACK, NULL, NULL, NULL, &ignored, &(int){ 0 });
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

/* ---- reads ---- */

/* Copies rows [0, count) of r (id, ts, user, text, room) into the page. */
static int read_rows(const PGresult *r, int count, struct store_page *page, struct chat_fail *f)
{
    struct store_page_builder b = { 0 };
    int err = 0;

    for (int i = 0; i < count && err == 0; i++) {
        if (PQgetisnull(r, i, 0))
            continue;          /* the marks' row when no message matched */
        err = store_page_add(page, &b, pg_col_int(r, i, 0), pg_col_int(r, i, 1),
                             PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2),
                             PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3),
                             PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4), f);
    }
    store_page_done(page, &b);
    return err;
}

int pg_fetch(struct store *base, const char *room, size_t room_len, int64_t index,
                    int limit, int tail, struct store_page *page, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char a[24], b[24];
    const char *vals[3] = { room, a, b };
    const int lens[3] = { (int)room_len, 0, 0 }, fmts[3] = { 1, 0, 0 };
    int err, rows, max;
    PGresult *r;

    memset(page, 0, sizeof *page);
    if (tail > 0) {
        snprintf(a, sizeof a, "%d", tail);
        r = pg_run(s, ST_TAIL, vals, lens, fmts, f, &err);
        max = tail;
    } else {
        snprintf(a, sizeof a, "%lld", (long long)index);
        snprintf(b, sizeof b, "%d", limit + 1);
        r = pg_run(s, ST_AFTER, vals, lens, fmts, f, &err);
        max = limit;
    }
    if (!r)
        return err;
    rows = PQntuples(r);
    if (rows == 0) {
        PQclear(r);
        return chat_fail(f, CHAT_EINTERNAL, "database error (no row)");
    }
    page->more = rows > max && !PQgetisnull(r, 0, 0);
    err = read_rows(r, rows > max ? max : rows, page, f);
    page->max_index = pg_col_int(r, 0, 5);
    page->seen_id = pg_col_int(r, 0, 6);
    page->pruned = tail == 0 && index < pg_col_int(r, 0, 7);
    PQclear(r);
    if (err < 0) {
        store_page_free(page);
        return err;
    }
    if (page->n > 0)
        page->max_index = page->msgs[page->n - 1].id;
    return 0;
}

int pg_since(struct store *base, int64_t after, int limit, struct store_page *page,
                    struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char a[24], b[24];
    const char *vals[2] = { a, b };
    int err, rows;
    PGresult *r;

    memset(page, 0, sizeof *page);
    snprintf(a, sizeof a, "%lld", (long long)after);
    snprintf(b, sizeof b, "%d", limit + 1);
    if (!(r = pg_run(s, ST_SINCE, vals, NULL, NULL, f, &err)))
        return err;
    rows = PQntuples(r);
    page->more = rows > limit;
    err = read_rows(r, rows > limit ? limit : rows, page, f);
    PQclear(r);
    if (err < 0) {
        store_page_free(page);
        return err;
    }
    page->max_index = page->seen_id = page->n ? page->msgs[page->n - 1].id : after;
    return 0;
}

int pg_max_id(struct store *base, int64_t *id, struct chat_fail *f)
{
    return pg_single_int((struct pg_db *)base, ST_MAX_ID, id, f);
}

int pg_check(struct store *base, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    int err;
    bool ro;
    PGresult *r = pg_run(s, ST_CHECK, NULL, NULL, NULL, f, &err);

    if (!r) {
        char why[sizeof f->msg];
        memcpy(why, f->msg, sizeof why);
        return chat_fail(f, CHAT_EUNAVAIL, "database is not readable: %s", why);
    }
    ro = PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 1), "off") != 0;
    PQclear(r);
    if (ro)
        return chat_fail(f, CHAT_EUNAVAIL, "database is not writable (read-only or a standby)");
    return 0;
}

/* ---- retention: each batch one statement, so its own short transaction ---- */

int pg_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char a[24], b[24];
    const char *vals[2] = { a, b };
    int64_t edge, n;
    int err;
    PGresult *r;

    snprintf(a, sizeof a, "%lld", (long long)before_ms);
    if (!(r = pg_run(s, ST_AGE_EDGE, vals, NULL, NULL, f, &err)))
        return err;
    edge = pg_col_int(r, 0, 0);
    PQclear(r);
    snprintf(a, sizeof a, "%lld", (long long)edge);
    snprintf(b, sizeof b, "%d", batch);
    if (!(r = pg_run(s, ST_AGE_BATCH, vals, NULL, NULL, f, &err)))
        return err;
    n = pg_col_int(r, 0, 0);
    PQclear(r);
    return (int)n;
}

int pg_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    char k[24], e[24], b[24];
    int err, total = 0;
    PGresult *rooms, *r;

    /* The rooms first, in one result: the deletes below run on their own. */
    if (!(rooms = pg_run(s, ST_ROOMS, NULL, NULL, NULL, f, &err)))
        return err;
    snprintf(k, sizeof k, "%d", keep);
    snprintf(b, sizeof b, "%d", batch);
    for (int i = 0; i < PQntuples(rooms) && total >= 0; i++) {
        const char *room = PQgetvalue(rooms, i, 0);
        int room_len = PQgetlength(rooms, i, 0);
        const char *ev[2] = { room, k }, *bv[3] = { room, e, b };
        const int lens[3] = { room_len, 0, 0 }, fmts[3] = { 1, 0, 0 };
        if (!(r = pg_run(s, ST_COUNT_EDGE, ev, lens, fmts, f, &err))) {
            total = err;
            break;
        }
        int64_t edge_id = PQntuples(r) ? pg_col_int(r, 0, 0) : 0;
        PQclear(r);
        if (edge_id == 0)
            continue;          /* no more than keep messages */
        snprintf(e, sizeof e, "%lld", (long long)edge_id);
        for (;;) {
            if (!(r = pg_run(s, ST_ROOM_BATCH, bv, lens, fmts, f, &err))) {
                total = err;
                break;
            }
            int got = (int)pg_col_int(r, 0, 0);
            PQclear(r);
            total += got;
            if (got < batch)
                break;
        }
    }
    PQclear(rooms);
    return total;
}
