/*
 * workers.h - the worker threads of chat-fcgi and the connections they
 * serve: one epoll set of the listening socket and of every connection
 * waiting for its next request (just accepted, or kept open between
 * requests when nginx asks with FCGI_KEEP_CONN). A worker takes a
 * connection only when it is readable, reads its request with libfcgi
 * (bounded in time) and routes it; no thread waits on an idle connection.
 */
#ifndef CHAT_FCGI_WORKERS_H
#define CHAT_FCGI_WORKERS_H

#include "commit.h"
#include "hold.h"
#include "store.h"

struct workers;

struct workers_opts {
    int threads;
    int listen_fd;             /* opened (non-blocking) or inherited; never shut down here */
    long fd_limit;             /* the descriptor limit (-1: unknown) */
    int keep_max;              /* connections kept idle between requests, at most */
    struct store_opts store;   /* one connection per worker */
    struct hold *hold;
    struct commit *commit;
};

/*
 * Installs the wake-up signal's handler and blocks the signal in the
 * calling thread (the workers unblock it). Call before FCGX_Init, which
 * then keeps the handler, and before any thread starts.
 */
void workers_signals(void);

/* Starts the threads. Returns 0 and sets *out, or a code with *f set (none left running). */
int workers_start(const struct workers_opts *o, struct workers **out, struct chat_fail *f);
/*
 * Once a second: wakes a worker that has been reading one request too
 * long, to drop it, and shuts down connections silent too long (accepted
 * without a request within CHAT_READ_TIMEOUT_MS, kept idle beyond
 * CHAT_KEEP_IDLE_MS).
 */
void workers_tick(struct workers *ws);
/* Connections kept idle between requests now (0 for NULL). */
int workers_kept(struct workers *ws);
/*
 * Wakes every worker until all have ended, or timeout_ms pass. Returns the
 * workers still running. workers_stop(NULL, ...) returns 0.
 */
int workers_stop(struct workers *ws, int timeout_ms);
/*
 * Joins the ended workers, closes the connections in the set and frees
 * them. Until then a request that ends (a parked long-poll answered by
 * hold_stop) gives its connection back here, and it is closed: call it
 * after hold_stop. workers_free(NULL) is a no-op.
 */
void workers_free(struct workers *ws);

#endif
