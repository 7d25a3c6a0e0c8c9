/*
 * store_pg.h - what the files of the PostgreSQL backend share (store_pg.c:
 * connections, schema, change notices; store_pg_read.c: statements and
 * reads; store_pg_write.c: writes and retention). Only store_pg*.c include
 * it, and they are the only files that include libpq-fe.h.
 */
#ifndef CHAT_STORE_PG_H
#define CHAT_STORE_PG_H

#include <libpq-fe.h>

#include "store_backend.h"

#define LOOK_EVERY_MS    1000    /* the watcher's look at the largest id, without a notice */
#define PG_ID_LOCK       "7243582" /* the advisory lock of sql/schema-pg.sql's ids in commit order */

/* Type oids of the parameters (pg_type.h is a server header). */
#define OID_INT4 23
#define OID_INT8 20
#define OID_TEXT 25
#define OID_TEXT_ARRAY 1009

enum stmt_id {
    ST_APPEND, ST_APPEND_PLAIN, ST_FIND_CID,
    ST_AFTER, ST_TAIL, ST_SINCE, ST_MAX_ID, ST_CHECK,
    ST_AGE_EDGE, ST_AGE_BATCH, ST_ROOMS, ST_COUNT_EDGE, ST_ROOM_BATCH, ST_LISTEN,
    ST_COUNT
};

struct stmt {
    const char *what;          /* in logs and refusals */
    const char *sql;
    int nparams;
    Oid types[4];
};

extern const struct stmt pgs_stmts[ST_COUNT];

struct pg_db {
    struct store base;
    PGconn *conn;              /* NULL while disconnected */
    char *uri;
    char lock_timeout[24];     /* the writer waits this long for another ("2000ms") */
    char idle_timeout[24];     /* a session idle in a transaction this long is ended ("2000ms") */
    int64_t next_try_ms;       /* no connection attempt before this */
    int backoff_ms;            /* 0 while connected */
    bool doomed;               /* the server said it closes the connection */
    bool connected_once;       /* a failure after this is an outage, logged */
    bool ahead;                /* in a transaction holding the id lock (pgs_write_ahead) */
    int ahead_err;             /* pgs_write_ahead's failure, for the next append (0: none) */
    struct chat_fail ahead_fail;
    /* the watcher's connection only (pg_watch): */
    bool listen;
    int epfd;                  /* holds the socket while connected */
    int64_t version;           /* the change counter of pg_data_version */
    int64_t counter;           /* the largest id at the last look */
    int64_t next_look_ms;
};

/* store_pg.c: connections. */
void pgs_stmt_name(enum stmt_id id, char name[8]);
const char *pgs_conn_error(PGconn *c, char *buf, size_t size);
void pgs_drop(struct pg_db *s, const char *why);
int pgs_take_notices(struct pg_db *s);
int pgs_ready(struct pg_db *s, struct chat_fail *f);
/* store_pg_write.c: store_backend.h's append_tx, prune_age, prune_rooms. */
int pgs_append_tx(struct store *base, struct store_item **items, size_t n,
                        struct chat_fail *f, bool *begun);
bool pgs_write_ahead(struct store *base);
int pgs_prune_age(struct store *base, int64_t before_ms, int batch, struct chat_fail *f);
int pgs_prune_rooms(struct store *base, int keep, int batch, struct chat_fail *f);
/* store_pg_read.c: running statements, and store_backend.h's reads and probes. */
int pgs_fail_of(struct pg_db *s, PGresult *r, struct chat_fail *f, const char *what);
PGresult *pgs_run(struct pg_db *s, enum stmt_id id, const char *const *vals, const int *lens,
                     const int *fmts, struct chat_fail *f, int *err);
int64_t pgs_col_int(const PGresult *r, int row, int col);
int pgs_fetch(struct store *base, const char *room, size_t room_len, int64_t index,
                    int limit, int tail, struct store_page *page, struct chat_fail *f);
int pgs_since(struct store *base, int64_t after, int limit, struct store_page *page,
                    struct chat_fail *f);
int pgs_data_version(struct store *base, int64_t *v, struct chat_fail *f);
int pgs_max_id(struct store *base, int64_t *id, struct chat_fail *f);
int pgs_check(struct store *base, struct chat_fail *f);

#endif
