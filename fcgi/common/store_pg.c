/*
 * store_pg.c - the PostgreSQL backend of the store (store_backend.h), for
 * several nodes that share one database (SPEC section 9): connections,
 * schema and change notices here, statements and reads in
 * store_pg_read.c, writes and retention in store_pg_write.c. These and
 * store_pg.h are the only files that include libpq-fe.h.
 *
 * Design:
 *   - --db is a libpq URI (postgresql:// or postgres://). Every statement
 *     is prepared once per connection (PQprepare) and run with parameters
 *     (PQexecPrepared): no SQL text is built from input. Strings travel in
 *     binary format with their lengths (a batch's as text[] arrays), so a
 *     parameter never depends on a NUL.
 *   - Ids are handed out by the database in commit order (a trigger that
 *     takes sql/schema-pg.sql's counter lock, then the sequence's next
 *     value), so readers follow ids exactly as on SQLite. A batch of the
 *     group commit is one statement (one multi-row INSERT, its own
 *     transaction): one round trip, and the counter's lock is held for the
 *     server's work and the commit's WAL flush. A short queue first waits
 *     for the lock in a transaction (store_write_ahead), and holds it
 *     through one round trip more and the node's taking of its batch.
 *   - A read that must be one snapshot (rows, the room's latest id, the
 *     largest id, retention's mark) is one statement.
 *   - A connection that breaks answers CHAT_EUNAVAIL ("database
 *     unavailable": 503 with Retry-After) and is made again by the next
 *     call, at most every 0.2 s doubling to 5 s while the server stays
 *     away; a process never exits for it. Before each use a connection
 *     whose server said goodbye while it was idle (a restart) is noticed
 *     and replaced, so the first request after a restart is served.
 *   - Change notices (the watcher's connection only): LISTEN chat, renewed
 *     on every reconnect. The descriptor the watcher polls is an epoll set
 *     holding the connection's socket, so it stays the same across
 *     reconnects. The change counter the watcher probes is kept here: it
 *     moves on every notice, on every reconnect (notices may have been
 *     missed) and when a look at the largest id, once a second, finds it
 *     moved (rows written with triggers disabled); the watcher's timer
 *     probes thus cost no round trip.
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

#define SCHEMA_VERSION 2         /* of sql/schema-pg.sql */

#define BACKOFF_FIRST_MS 200
#define BACKOFF_MAX_MS   5000


extern const char schema_pg_sql[];   /* sql/schema-pg.sql, compiled in by the Makefile */


/* Statement names on the server: "c0", "c1", ... by stmt_id. */
void pgs_stmt_name(enum stmt_id id, char name[8])
{
    snprintf(name, 8, "c%d", (int)id);
}


/*
 * Logs: a connection closed is told at most every 10 s per process (a
 * restart closes them all); an outage (a connection that cannot be made
 * again) once, and its end once.
 */
#define LOST_LOG_EVERY_MS 10000
static atomic_bool outage_logged;
static atomic_llong lost_logged_ms = -LOST_LOG_EVERY_MS;

static const struct store_backend *backend_of(void);
static void pg_close(struct store *base);
static int apply_schema(struct pg_db *s, struct chat_fail *f);

/*
 * libpq's notices (schema NOTICEs, warnings) go to our log, not to stderr.
 * A FATAL one that comes while the connection is idle is the server
 * closing it (a restart, pg_terminate_backend): the connection is doomed.
 */
static void on_notice(void *arg, const PGresult *r)
{
    struct pg_db *s = arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorMessage(r);
    size_t len = strlen(msg);

    while (len && msg[len - 1] == '\n')
        len--;
    if (sev && (!strcmp(sev, "FATAL") || !strcmp(sev, "PANIC")))
        s->doomed = true;
    log_debug("database: %.*s", (int)len, msg);
}

/* The first line of libpq's message of the connection, for a log or a refusal. */
const char *pgs_conn_error(PGconn *c, char *buf, size_t size)
{
    const char *m = c ? PQerrorMessage(c) : "out of memory";
    size_t len = strcspn(m, "\n");
    snprintf(buf, size, "%.*s", (int)(len < size ? len : size - 1), m);
    return buf;
}

/* Closes the connection; the next call makes a new one. */
void pgs_drop(struct pg_db *s, const char *why)
{
    int64_t now = util_now_ms(), last = atomic_load(&lost_logged_ms);

    if (!s->conn)
        return;
    if (now - last >= LOST_LOG_EVERY_MS && atomic_compare_exchange_strong(&lost_logged_ms, &last, now))
        log_info("database connection closed (%s): reconnecting", why);
    if (s->epfd >= 0 && PQsocket(s->conn) >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, PQsocket(s->conn), NULL);
    PQfinish(s->conn);
    s->conn = NULL;
    s->doomed = false;
    s->ahead = false;
    s->next_try_ms = 0;        /* once at once: the server may be back already */
}

/* Counts (and frees) the notices libpq has read; they move the change counter. */
int pgs_take_notices(struct pg_db *s)
{
    PGnotify *n;
    int count = 0;

    while (s->conn && (n = PQnotifies(s->conn))) {
        PQfreemem(n);
        count++;
    }
    s->version += count;
    return count;
}

/*
 * The watcher's connection: LISTEN, and its socket in the epoll set. The
 * change counter moves, since notices may have been missed before. Returns
 * 0 or a negative code with *f set.
 */
static int start_listen(struct pg_db *s, struct chat_fail *f)
{
    struct epoll_event ev = { .events = EPOLLIN };
    char name[8], buf[160];
    PGresult *r;
    bool ok;

    pgs_stmt_name(ST_LISTEN, name);
    r = PQexecPrepared(s->conn, name, 0, NULL, NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ok) {
        log_warn("LISTEN: %s", pgs_conn_error(s->conn, buf, sizeof buf));
        return chat_fail(f, CHAT_EUNAVAIL, "database unavailable, try again");
    }
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, PQsocket(s->conn), &ev) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "epoll_ctl: %s", strerror(errno));
    s->version++;
    return 0;
}

/*
 * Prepares the statements, applies the session settings and, on the
 * watcher's connection, listens. Returns 0 or a negative code with *f set.
 */
static int setup_conn(struct pg_db *s, struct chat_fail *f)
{
    const char *lt[2] = { s->lock_timeout, s->idle_timeout };
    char name[8], buf[160];
    PGresult *r;
    bool ok;

    PQsetNoticeReceiver(s->conn, on_notice, s);
    /*
     * A session idle inside a transaction about as long is ended by the
     * server: a writer holding its turn (pgs_write_ahead) on a node that
     * froze stops the other nodes' writes no longer than that.
     */
    r = PQexecParams(s->conn, "SELECT set_config('lock_timeout', $1, false),"
                     " set_config('idle_in_transaction_session_timeout', $2, false)", 2, NULL, lt,
                     NULL, NULL, 0);
    ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    if (!ok) {
        log_warn("database session settings: %s", pgs_conn_error(s->conn, buf, sizeof buf));
        return chat_fail(f, CHAT_EUNAVAIL, "database unavailable, try again");
    }
    for (int i = 0; i < ST_COUNT; i++) {
        pgs_stmt_name(i, name);
        r = PQprepare(s->conn, name, pgs_stmts[i].sql, pgs_stmts[i].nparams, pgs_stmts[i].types);
        ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            int code = PQstatus(s->conn) == CONNECTION_OK ? CHAT_EINTERNAL : CHAT_EUNAVAIL;
            const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
            chat_fail(f, code, "prepare %s: %s", pgs_stmts[i].what,
                      msg ? msg : pgs_conn_error(s->conn, buf, sizeof buf));
            PQclear(r);
            return code;
        }
        PQclear(r);
    }
    return s->listen ? start_listen(s, f) : 0;
}

/* Makes the connection. Returns 0 or CHAT_EUNAVAIL with *f set. */
static int connect_db(struct pg_db *s, struct chat_fail *f)
{
    /* Defaults first: whatever the URI says wins (libpq keeps the last). */
    const char *const keys[] = { "connect_timeout", "keepalives_idle", "keepalives_interval",
                                 "keepalives_count", "client_encoding", "fallback_application_name",
                                 "dbname", NULL };
    const char *const vals[] = { "2", "10", "5", "3", "UTF8", program_invocation_short_name,
                                 s->uri, NULL };
    char buf[160];
    int err;

    s->conn = PQconnectdbParams(keys, vals, 1);
    if (s->conn && PQstatus(s->conn) == CONNECTION_OK) {
        /* The schema once, at open, before the statements that use it. */
        if ((s->connected_once || (err = apply_schema(s, f)) == 0) && (err = setup_conn(s, f)) == 0) {
            s->backoff_ms = 0;
            s->connected_once = true;
            if (atomic_exchange(&outage_logged, false))
                log_info("database connection restored (%s)", PQdb(s->conn));
            return 0;
        }
    } else {
        /* The reason to the log; a client learns only to retry. */
        pgs_conn_error(s->conn, buf, sizeof buf);
        err = chat_fail(f, CHAT_EUNAVAIL, s->connected_once ? "database unavailable, try again"
                                                            : "cannot connect to the database: %s", buf);
        if (s->connected_once && !atomic_exchange(&outage_logged, true))
            log_warn("database unavailable (%s): retrying with back-off", buf);
    }
    if (s->conn && s->epfd >= 0 && PQsocket(s->conn) >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, PQsocket(s->conn), NULL);
    PQfinish(s->conn);
    s->conn = NULL;
    s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : BACKOFF_FIRST_MS;
    if (s->backoff_ms > BACKOFF_MAX_MS)
        s->backoff_ms = BACKOFF_MAX_MS;
    s->next_try_ms = util_now_ms() + s->backoff_ms;
    return err;
}

/*
 * A connection fit to use now: the one there is, unless the server closed
 * it while it was idle (what it sent is read first), else a new one when
 * the back-off allows. Returns 0 or CHAT_EUNAVAIL with *f set.
 */
int pgs_ready(struct pg_db *s, struct chat_fail *f)
{
    /*
     * What the server sent while idle: notices, or a FATAL error and the
     * end of the stream, which may need a second read to be seen.
     */
    for (int i = 0; s->conn && i < 3; i++) {
        struct pollfd pfd = { .fd = PQsocket(s->conn), .events = POLLIN };
        if (PQstatus(s->conn) != CONNECTION_OK || s->doomed) {
            pgs_drop(s, "closed by the server");
            break;
        }
        if (poll(&pfd, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(s->conn)) {
            pgs_drop(s, "closed by the server");
            break;
        }
        pgs_take_notices(s);       /* parses what came, FATAL included */
    }
    if (s->conn)
        return 0;
    if (util_now_ms() < s->next_try_ms)
        return chat_fail(f, CHAT_EUNAVAIL, "database unavailable, try again");
    return connect_db(s, f);
}

/* Exec of one constant statement of the schema step; true when it succeeded. */
static bool exec_ok(PGconn *c, const char *sql, PGresult **keep)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

    if (keep && ok)
        *keep = r;
    else
        PQclear(r);
    return ok;
}

/*
 * The schema version of the database: 0 when it has none, -1 on error;
 * *tables tells whether it has a messages table (a schema to upgrade).
 */
static int schema_version(PGconn *c, bool *tables)
{
    PGresult *r = NULL;
    bool versioned;
    int v;

    if (!exec_ok(c, "SELECT to_regclass('schema_version') IS NOT NULL, to_regclass('messages') IS NOT NULL", &r))
        return -1;
    versioned = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    *tables = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
    PQclear(r);
    if (!versioned)
        return 0;
    if (!exec_ok(c, "SELECT coalesce(max(version), 0) FROM schema_version", &r))
        return -1;
    v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/*
 * Creates the schema when the database has none, upgrades an older one,
 * refuses a newer one; one process at a time (an advisory lock), so nodes
 * that start together apply it once. The schema is this program's own
 * text, run as it is (it holds several statements).
 */
static int apply_schema(struct pg_db *s, struct chat_fail *f)
{
    PGconn *c = s->conn;
    char buf[160];
    bool tables;
    int v = schema_version(c, &tables);

    if (v == SCHEMA_VERSION)
        return 0;
    if (v < 0 || !exec_ok(c, "BEGIN", NULL) ||
        !exec_ok(c, "SELECT pg_advisory_xact_lock(7243581)", NULL) ||
        (v = schema_version(c, &tables)) < 0)
        goto fail;
    if (v > SCHEMA_VERSION) {
        exec_ok(c, "ROLLBACK", NULL);
        return chat_fail(f, CHAT_EUNAVAIL,
                         "database schema version %d is newer than this program's %d: "
                         "upgrade the program", v, SCHEMA_VERSION);
    }
    if (v < SCHEMA_VERSION) {
        if (!exec_ok(c, "SET LOCAL client_min_messages = warning", NULL) || !exec_ok(c, schema_pg_sql, NULL))
            goto fail;
    }
    if (!exec_ok(c, "COMMIT", NULL))
        goto fail;
    if (v < SCHEMA_VERSION)
        log_info("%s the schema in database %s", tables ? "upgraded" : "created", PQdb(c));
    return 0;
fail:
    pgs_conn_error(c, buf, sizeof buf);
    if (PQtransactionStatus(c) != PQTRANS_IDLE)
        exec_ok(c, "ROLLBACK", NULL);
    return chat_fail(f, PQstatus(c) == CONNECTION_OK ? CHAT_EINTERNAL : CHAT_EUNAVAIL,
                     "cannot apply the schema: %s", buf);
}

static int pg_open(const struct store_opts *o, struct store **out, struct chat_fail *f)
{
    struct pg_db *s = calloc(1, sizeof *s);
    int err;

    /* Before any log line that may echo it (libpq's errors may show a bad password bare). */
    log_secrets_of(o->path);
    if (!s)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    s->base.backend = backend_of();
    s->epfd = -1;
    snprintf(s->lock_timeout, sizeof s->lock_timeout, "%dms", o->busy_ms > 0 ? o->busy_ms : 1);
    snprintf(s->idle_timeout, sizeof s->idle_timeout, "%dms", o->busy_ms > 1000 ? o->busy_ms : 1000);
    if (!(s->uri = strdup(o->path))) {
        free(s);
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    }
    /* The first connection must work: a bad URI or schema stops the start. */
    if ((err = connect_db(s, f)) < 0) {
        pg_close(&s->base);
        return err;
    }
    *out = &s->base;
    return 0;
}

static void pg_close(struct store *base)
{
    struct pg_db *s = (struct pg_db *)base;
    if (!s)
        return;
    PQfinish(s->conn);
    if (s->epfd >= 0)
        close(s->epfd);
    free(s->uri);
    free(s);
}

/* ---- change notices: LISTEN on the watcher's connection ---- */

static int pg_watch(struct store *base, struct chat_fail *f)
{
    struct pg_db *s = (struct pg_db *)base;
    int err;

    if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "epoll_create1: %s", strerror(errno));
    s->listen = true;
    /* Connected: listen now; else the connection pgs_ready() makes listens. */
    if (s->conn && (err = start_listen(s, f)) < 0) {
        pgs_drop(s, f->msg);
        return err;
    }
    return pgs_ready(s, f);
}

static int pg_changes_fd(struct store *base)
{
    return ((struct pg_db *)base)->epfd;
}

/* Reads the notices that made the socket readable; a broken connection asks for a probe too. */
static bool pg_changes_drain(struct store *base)
{
    struct pg_db *s = (struct pg_db *)base;

    if (!s->conn)
        return true;
    if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK) {
        pgs_drop(s, "closed by the server");
        return true;
    }
    return pgs_take_notices(s) > 0;
}

/* A notice comes after its commit is visible: no look again needed. */
static int pg_recheck_us(struct store *base, bool written, bool changed)
{
    (void)base; (void)written; (void)changed;
    return -1;
}

/* libpq's URIs; key=value strings are not taken (a file could be named so). */
static bool pg_claims(const char *db)
{
    return strncmp(db, "postgresql://", 13) == 0 || strncmp(db, "postgres://", 11) == 0;
}

const struct store_backend store_pg = {
    .name = "postgresql", .remote = true, .claims = pg_claims, .open = pg_open, .close = pg_close,
    .append_tx = pgs_append_tx, .write_ahead = pgs_write_ahead, .fetch = pgs_fetch, .since = pgs_since,
    .data_version = pgs_data_version, .max_id = pgs_max_id, .prune_age = pgs_prune_age,
    .prune_rooms = pgs_prune_rooms, .check = pgs_check, .watch = pg_watch,
    .changes_fd = pg_changes_fd, .changes_drain = pg_changes_drain, .recheck_us = pg_recheck_us,
};

static const struct store_backend *backend_of(void)
{
    return &store_pg;
}

