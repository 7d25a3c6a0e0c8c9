/*
 * chat_limits.h - every compile-time limit of the chat system in one place.
 *
 * The numbers that SPEC.md fixes (text and body sizes, name lengths, the
 * ranges of limit/tail/wait) live here so that the FastCGI program, the
 * WebSocket companion and the tests agree on them.
 */
#ifndef CHAT_LIMITS_H
#define CHAT_LIMITS_H

#define CHAT_TEXT_MAX      4096      /* bytes of a message text */
#define CHAT_USER_MAX      64        /* bytes of a display name */
#define CHAT_NAME_MAX      64        /* bytes of a room or a cid */
#define CHAT_BODY_MAX      65536     /* bytes of a POST body */
#define CHAT_PARAMS_MAX    32        /* distinct parameters in one request */

#define CHAT_INDEX_MAX     4611686018427387903LL  /* 2^62 - 1: the largest cursor */
#define CHAT_LIMIT_DEFAULT 100       /* messages per answer */
#define CHAT_LIMIT_MAX     1000
#define CHAT_TAIL_MAX      1000
#define CHAT_WAIT_MAX      60        /* seconds a long-poll may be held */

#define CHAT_DEFAULT_ROOM  "lobby"

/* Tuning of the two programs: not part of the contract. */
#define CHAT_BATCH_MAX        256    /* messages stored in one transaction, at most */
#define CHAT_GATHER_US        200    /* under load, how long a committer waits for more sends */
#define CHAT_COMMIT_QUEUE_MAX (4 * CHAT_BATCH_MAX)  /* chat-fcgi: sends waiting beyond this get 503 */
#define CHAT_WRITER_QUEUE_MAX 10000  /* chat-ws: sends waiting beyond this get an error frame */
#define CHAT_WATCH_BATCH      500    /* rows the watcher reads per query */
#define CHAT_HOLD_BUCKETS     256    /* rooms hash into this many lists of parked long-polls */
#define CHAT_HOLD_WRITE_MS    1000   /* a parked answer's write gives up after this */
#define CHAT_HOLD_ROOMS_KNOWN 65536  /* chat-fcgi: rooms whose latest id the hold remembers */
/* chat-fcgi: each read of a request must come within this (nginx writes it at once). */
#define CHAT_READ_TIMEOUT_MS  2000
/*
 * chat-fcgi: a connection kept open between requests (FCGI_KEEP_CONN) is
 * closed after this long idle: longer than nginx keeps an idle upstream
 * connection (its keepalive_timeout, 60 s by default), so nginx closes first.
 */
#define CHAT_KEEP_IDLE_MS     120000
#define CHAT_KEEP_MAX         4096   /* chat-fcgi: connections kept idle at once, at most */
#define CHAT_RETAIN_BATCH     500    /* messages retention deletes per write transaction */
#define CHAT_REPLAY_CHUNK     100    /* chat-ws: stored messages read per replay step */

#endif
