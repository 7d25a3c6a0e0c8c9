/*
 * store_pg_read.c - the PostgreSQL backend's statements, how they run,
 * and its reads (see store_pg.c).
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

const struct stmt pgs_stmts[ST_COUNT] = {
    /*
     * A batch of messages, $1..$4 the rooms, users, texts and cids (text[],
     * NULL for no cid; a cid repeated within the batch is sent once). The
     * rows of cids the room already has come first (n from 1, id, ts), then
     * the new rows in id order (NULL, id, ts, room, user, text, cid). A cid
     * committed meanwhile by another node makes its insert do nothing: no
     * row, see pgs_append_tx.
     */
    [ST_APPEND]   = { "insert", "WITH b AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
                      "           WITH ORDINALITY AS b(room, usr, txt, cid, n)),"
                      " old AS (SELECT b.n, m.id, m.ts FROM b JOIN messages m ON m.room = b.room AND m.cid = b.cid),"
                      " ins AS (INSERT INTO messages (room, \"user\", text, cid)"
                      "         SELECT room, usr, txt, cid FROM b WHERE n NOT IN (SELECT n FROM old) ORDER BY n"
                      "         ON CONFLICT (room, cid) DO NOTHING RETURNING id, ts, room, \"user\", text, cid)"
                      " (SELECT n, id, ts, NULL, NULL, NULL, NULL FROM old)"
                      " UNION ALL (SELECT NULL, id, ts, room, \"user\", text, cid FROM ins ORDER BY id)",
                      4, { OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY } },
    /*
     * The same for a batch without a cid, the common case: nothing to look
     * up or to clash (no join, no ON CONFLICT), so the statement, which
     * runs while the id lock is held, takes about two thirds the time
     * (EXPLAIN ANALYZE of 8 rows in psql, median of 20: 0.080 ms, against
     * 0.125 ms for ST_APPEND).
     */
    [ST_APPEND_PLAIN] = { "insert", "WITH ins AS (INSERT INTO messages (room, \"user\", text, cid)"
                      "         SELECT room, usr, txt, cid FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
                      "           WITH ORDINALITY AS b(room, usr, txt, cid, n) ORDER BY n"
                      "         RETURNING id, ts, room, \"user\", text, cid)"
                      " SELECT NULL::bigint, id, ts, room, \"user\", text, cid FROM ins ORDER BY id",
                      4, { OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY, OID_TEXT_ARRAY } },
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
    /* Readable, and writable: not a standby, not read-only by default. */
    [ST_CHECK]    = { "check", "SELECT (SELECT max(id) FROM messages), current_setting('transaction_read_only')",
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
/*
 * Turns a failed result into a refusal the client can act on, and drops a
 * broken connection. Clears r.
 */
int pgs_fail_of(struct pg_db *s, PGresult *r, struct chat_fail *f, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *sev = r ? PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED) : NULL;
    char buf[160];
    int err;

    /* No error from the server, a broken connection, or a FATAL one: the session is over. */
    if (!state || PQstatus(s->conn) != CONNECTION_OK || (sev && strcmp(sev, "ERROR") != 0)) {
        pgs_conn_error(s->conn, buf, sizeof buf);
        err = chat_fail(f, CHAT_EUNAVAIL, "database unavailable (%s), try again", what);
        pgs_drop(s, msg ? msg : buf);
    } else if (!strncmp(state, "08", 2) || !strncmp(state, "53", 2) || !strncmp(state, "57", 2) ||
               !strncmp(state, "58", 2) || !strncmp(state, "40", 2) || !strcmp(state, "55P03") ||
               !strcmp(state, "25006")) {
        /* Connection, resources, operator, system, serialisation, lock wait, read-only. */
        log_warn("%s: %s (%s)", what, msg ? msg : "", state);
        err = chat_fail(f, CHAT_EUNAVAIL, "database is busy or unavailable (%s), try again", state);
    } else {
        log_error("%s: %s (%s)", what, msg ? msg : "", state);
        err = chat_fail(f, CHAT_EINTERNAL, "database error (%s)", state);
    }
    PQclear(r);
    return err;
}

/*
 * Runs a prepared statement, its parameters as PQexecPrepared takes them:
 * fmts[i] 1 sends vals[i] as lens[i] bytes (a string, binary-safe), 0 (or
 * no fmts) as NUL-terminated text (a number); a NULL vals[i] is SQL NULL.
 * Returns the result (PQclear it), or NULL with *err and *f set.
 */
PGresult *pgs_run(struct pg_db *s, enum stmt_id id, const char *const *vals, const int *lens,
                     const int *fmts, struct chat_fail *f, int *err)
{
    char name[8];
    PGresult *r;
    ExecStatusType st;

    if ((*err = pgs_ready(s, f)) < 0)
        return NULL;
    pgs_stmt_name(id, name);
    r = PQexecPrepared(s->conn, name, pgs_stmts[id].nparams, vals, lens, fmts, 0);
    st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
        return r;
    *err = pgs_fail_of(s, r, f, pgs_stmts[id].what);
    return NULL;
}

/* Parses a bigint column. */
int64_t pgs_col_int(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Runs a statement with no parameter that returns one number. */
static int single_int(struct pg_db *s, enum stmt_id id, int64_t *out, struct chat_fail *f)
{
    int err;
    PGresult *r = pgs_run(s, id, NULL, NULL, NULL, f, &err);

    if (!r)
        return err;
    *out = PQntuples(r) > 0 ? pgs_col_int(r, 0, 0) : 0;
    PQclear(r);
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
        err = store_page_add(page, &b, pgs_col_int(r, i, 0), pgs_col_int(r, i, 1),
                             PQgetvalue(r, i, 2), (size_t)PQgetlength(r, i, 2),
                             PQgetvalue(r, i, 3), (size_t)PQgetlength(r, i, 3),
                             PQgetvalue(r, i, 4), (size_t)PQgetlength(r, i, 4), f);
    }
    store_page_done(page, &b);
    return err;
}

int pgs_fetch(struct store *base, const char *room, size_t room_len, int64_t index,
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
        r = pgs_run(s, ST_TAIL, vals, lens, fmts, f, &err);
        max = tail;
    } else {
        snprintf(a, sizeof a, "%lld", (long long)index);
        snprintf(b, sizeof b, "%d", limit + 1);
        r = pgs_run(s, ST_AFTER, vals, lens, fmts, f, &err);
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
    page->max_index = pgs_col_int(r, 0, 5);
    page->seen_id = pgs_col_int(r, 0, 6);
    page->pruned = tail == 0 && index < pgs_col_int(r, 0, 7);
    PQclear(r);
    if (err < 0) {
        store_page_free(page);
        return err;
    }
    if (page->n > 0)
        page->max_index = page->msgs[page->n - 1].id;
    return 0;
}

int pgs_since(struct store *base, int64_t after, int limit, struct store_page *page,
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
    if (!(r = pgs_run(s, ST_SINCE, vals, NULL, NULL, f, &err)))
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

/*
 * The change counter. On the watcher's connection a local count (see the
 * opening comment): no round trip but the look once a second. On any
 * other, the largest id itself.
 */
int pgs_data_version(struct store *base, int64_t *v, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    int64_t now, counter;
    int err;

    if (!s->listen) {
        if ((err = single_int(s, ST_MAX_ID, &counter, f)) < 0)
            return err;
        *v = s->version = counter;
        return 0;
    }
    if ((err = pgs_ready(s, f)) < 0)
        return err;
    now = util_now_ms();
    if (now >= s->next_look_ms) {
        if ((err = single_int(s, ST_MAX_ID, &counter, f)) < 0)
            return err;
        pgs_take_notices(s);
        if (counter != s->counter)
            s->version++;
        s->counter = counter;
        s->next_look_ms = now + LOOK_EVERY_MS;
    }
    *v = s->version;
    return 0;
}

int pgs_max_id(struct store *base, int64_t *id, struct chat_fail *f)
{
    return single_int((struct pg_db *)base, ST_MAX_ID, id, f);
}

int pgs_check(struct store *base, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    int err;
    bool ro;
    PGresult *r = pgs_run(s, ST_CHECK, NULL, NULL, NULL, f, &err);

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

