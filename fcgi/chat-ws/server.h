/*
 * server.h - the state of chat-ws, one event loop's: its flags, its
 * threads, its connections and its counters. Everything here is touched by
 * the event loop only, but the threads' handles, which are thread-safe.
 */
#ifndef CHAT_WS_SERVER_H
#define CHAT_WS_SERVER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include <libwebsockets.h>

#include "feed.h"
#include "store.h"
#include "writer.h"

#include "cli.h"

#define WS_LISTEN_MAX 4           /* --listen addresses one chat-ws takes */

struct config {
    struct cli_common common;    /* --db, --probe-ms, --busy-ms, --sync, --socket-* */
    const char *listen[WS_LISTEN_MAX];   /* each --listen, in order */
    int nlisten;
    const char *origins;         /* comma-separated allow-list, or NULL */
    int ping_secs, handshake_secs;
    int sends_per_sec;           /* per connection; bursts of twice as many; 0: no limit */
    unsigned max_queue;
    int max_conns;               /* connections open at once; 0: by the descriptor limit */
    int max_streams;             /* event streams open at once (within max_conns); 0: max_conns */
    int sse_ping_secs;           /* a stream idle this long gets a ": ping" comment */
};

struct conn;
LIST_HEAD(conn_list, conn);

struct server {
    struct config cfg;
    struct lws_context *ctx;
    struct lws_vhost *vhost;     /* the first --listen's */
    struct store *store;         /* the loop's reads (replays) */
    struct feed *feed;
    struct writer *writer;
    struct conn_list conns;      /* every open connection */
    size_t nconns;               /* of every transport */
    size_t nstreams;             /* of them, server-sent events streams */
    uint64_t next_id;
    volatile sig_atomic_t stop_signal;
    bool closing_all;
    /* counters for /metrics */
    unsigned long long opened, frames_sent, received, refused, closed_slow;
    unsigned long long streams_opened, streams_refused, events_sent, streams_closed_slow;
};

extern struct server srv;

#endif
