/*
 * store_pg.h - what the files of the PostgreSQL backend share: the
 * connection, its statements, and the helpers that run them. Only
 * store_pg*.c include it (and so libpq-fe.h).
 */
#ifndef CHAT_STORE_PG_H
#define CHAT_STORE_PG_H

#include <libpq-fe.h>

#include "store_backend.h"

/* Type oids of the parameters (pg_type.h is a server header). */
#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25

enum stmt_id {
    ST_BEGIN, ST_COMMIT, ST_ROLLBACK, ST_APPEND, ST_FIND_CID,
    ST_AFTER, ST_TAIL, ST_SINCE, ST_MAX_ID, ST_COUNTER, ST_CHECK,
    ST_AGE_EDGE, ST_AGE_BATCH, ST_ROOMS, ST_COUNT_EDGE, ST_ROOM_BATCH, ST_LISTEN,
    ST_COUNT
};

/* A statement, prepared on every connection under its name (pg_stmt_name). */


struct pg_stmt {
    const char *what;          /* in logs and refusals */
    const char *sql;
    int nparams;
    Oid types[4];
};

/* Every statement of the backend (store_pg_ops.c). */
extern const struct pg_stmt pg_stmts[ST_COUNT];

struct pg_db {
    struct store base;
    PGconn *conn;              /* NULL while disconnected */
    char *uri;
    char lock_timeout[24];     /* the writer waits this long for another ("2000ms") */
    int64_t next_try_ms;       /* no connection attempt before this */
    int backoff_ms;            /* 0 while connected */
    bool doomed;               /* the server said it closes the connection */
    bool connected_once;       /* a failure after this is an outage, logged */
    /* the watcher's connection only (pg_watch): */
    bool listen;
    int epfd;                  /* holds the socket while connected */
    int64_t version;           /* the change counter of pg_data_version */
    int64_t counter;           /* message_ids.last at the last look */
    int64_t next_look_ms;
};

/* The server's name of a statement: "c0", "c1", ... by stmt_id. */
void pg_stmt_name(enum stmt_id id, char name[8]);
/* Closes the connection; the next call makes a new one. */
void pg_drop(struct pg_db *s, const char *why);
/*
 * A connection fit to use now: the one there is, unless the server closed
 * it while it was idle, else a new one when the back-off allows. Returns 0
 * or CHAT_EUNAVAIL with *f set.
 */
int pg_ready(struct pg_db *s, struct chat_fail *f);
/* Turns a failed result (or none) into a refusal, drops a broken connection, clears r. */
int pg_fail(struct pg_db *s, PGresult *r, struct chat_fail *f, const char *what);
/*
 * Runs a prepared statement, its parameters as PQexecPrepared takes them:
 * fmts[i] 1 sends vals[i] as lens[i] bytes (a string, binary-safe), 0 (or
 * no fmts) as NUL-terminated text (a number); a NULL vals[i] is SQL NULL.
 * Returns the result (PQclear it), or NULL with *err and *f set.
 */
PGresult *pg_run(struct pg_db *s, enum stmt_id id, const char *const *vals, const int *lens,
                 const int *fmts, struct chat_fail *f, int *err);
/* A bigint column (0 when NULL). */
int64_t pg_col_int(const PGresult *r, int row, int col);
/* Runs a statement with no parameter that returns one number. */
int pg_single_int(struct pg_db *s, enum stmt_id id, int64_t *out, struct chat_fail *f);

/* store_pg_ops.c: store_backend.h's append_tx, reads, check and retention. */
int pg_append_tx(struct store *base, struct store_item **items, size_t n, struct chat_fail *f, bool *begun);
int pg_fetch(struct store *base, const char *room, size_t room_len, int64_t index, int limit, int tail,
             struct store_page *page, struct chat_fail *f);
int pg_since(struct store *base, int64_t after, int limit, struct store_page *page, struct chat_fail *f);
int pg_max_id(struct store *base, int64_t *id, struct chat_fail *f);
int pg_check(struct store *base, struct chat_fail *f);
int pg_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f);
int pg_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f);

#endif
