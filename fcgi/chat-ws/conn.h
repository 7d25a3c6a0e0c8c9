/*
 * conn.h - one subscriber of chat-ws, whatever its transport: its room and
 * cursor, its bounded queue of frames, how it ends. The transports
 * (ws.c, sse.c) feed and drain it; replay.c and rooms.c fill its queue.
 */
#ifndef CHAT_WS_CONN_H
#define CHAT_WS_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <libwebsockets.h>

#include "chat.h"
#include "chat_limits.h"
#include "feed.h"

#define CLOSE_TRY_AGAIN_LATER 1013  /* RFC 6455 registry: try again later */

/* The transports differ only in how a frame goes out and how a stream ends. */
enum conn_kind {
    CONN_WS,                     /* a WebSocket (ws.c) */
    CONN_SSE                     /* a server-sent events stream (sse.c) */
};

/* Lives in libwebsockets' per-session storage. */
struct conn {
    LIST_ENTRY(conn) all;        /* srv.conns */
    enum conn_kind kind;
    LIST_ENTRY(conn) in_room;    /* rooms.c's index, once live */
    struct lws *wsi;
    uint64_t id;
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
    unsigned bucket;             /* of the room, in rooms.c */
    int64_t cursor;              /* last message id queued (or replayed past) */
    int tail;                    /* replay the last `tail` instead of after cursor */
    bool live_only;              /* neither index nor tail: start after the latest */
    bool replaying;              /* still reading stored messages */
    bool indexed;                /* live, in rooms.c's index */
    bool established;
    int close_code;              /* close with this once the queue allows */
    bool closing;                /* lws is closing it (the peer's close, a frame refused): no more frames */
    const char *close_reason;
    struct feed_msg **q;         /* ring of frames to send */
    unsigned qcap, qhead, qlen;
    /* Server-sent events only: */
    int64_t last_write_ms;       /* when the stream was last written to (for pings) */
    bool announce;               /* its ready event comes before the first replayed message */
    bool rx_off;                 /* not polled for input while it has nothing to write (sse.c) */
    /* WebSocket only: */
    char *rx;                    /* the client message being reassembled */
    size_t rx_len;
    double tokens;               /* sends allowed now (rate.h) */
    int64_t tokens_at;
    size_t auth_len;             /* 0: not authenticated; over CHAT_USER_MAX: too long */
    char auth[CHAT_USER_MAX + 1];   /* the name nginx authenticated (X-Chat-User) */
};

/* Registers an accepted connection and starts its replay (or goes live). */
void conn_open(struct lws *wsi, struct conn *c);
/* Forgets a connection that closed and frees its queue. Safe twice. */
void conn_gone(struct conn *c);

/* Queues a frame (taking a reference); false when the queue is full. */
bool conn_push(struct conn *c, struct feed_msg *m);
/* Drops every frame queued. */
void conn_queue_clear(struct conn *c);
/* The frame at the head, written: drops it. */
void conn_pop(struct conn *c);

/* Asks for a writable callback, whatever the transport (a stream may need its polling back). */
void conn_want_write(struct conn *c);

/*
 * A frame was queued to a connection that had none: written now when
 * libwebsockets holds nothing of the connection's (its writes went out
 * whole) and it is a plain HTTP/1 connection, else at its writable
 * callback. A fan-out's first write then waits for no poll() of every
 * socket, and no callback a socket.
 */
void conn_write_soon(struct conn *c);
/* Asks for the connection to be closed with code once it can write. */
void conn_close_later(struct conn *c, int code, const char *reason);
/*
 * A subscriber whose queue is full: cleared and closed as too slow (a
 * WebSocket with 1008, a stream ended at once).
 */
void conn_too_slow(struct conn *c);
/* Queues a rendered reply (json, malloc'd, taken) for this connection alone. */
void conn_reply(struct conn *c, char *json, size_t len);
/* Queues {"error": ..., "code": ...} for this connection alone. */
void conn_error(struct conn *c, const struct chat_fail *f);

/* The open connection with this id, or NULL. */
struct conn *conn_find(uint64_t id);

#endif
