/*
 * workers.h - the worker threads of chat-fcgi and the connections they
 * serve: one epoll set of the listening socket and of every connection
 * waiting for its next request (just accepted, or kept open between
 * requests when nginx asks with FCGI_KEEP_CONN). A worker takes a
 * connection only when it is readable, reads its request with libfcgi
 * (bounded in time) and routes it; no thread waits on an idle connection.
 *
 * nginx keeps FastCGI connections open between requests when it is told to
 * (`fastcgi_keep_conn on` with an upstream `keepalive` pool): that spares a
 * connect, an accept and a close a request, but libfcgi's own loop
 * (FCGX_Accept_r on a kept connection) blocks a thread on each kept
 * connection until its next request, and a parked long-poll would pin its
 * connection's thread for its whole wait. So no thread waits on a
 * connection here:
 *   - one epoll set holds the listening socket and every connection that is
 *     not being served: just accepted (FRESH), or kept between requests
 *     (IDLE); each is registered EPOLLONESHOT, so one readiness wakes one
 *     worker, which then owns that connection alone;
 *   - the workers wait in epoll_wait() on that set; a worker woken by the
 *     listening socket accepts one connection (listen.c: bounded reads) and
 *     adds it; one woken by a connection reads its request with libfcgi
 *     (FCGX_Accept_r on the open connection, bounded in time) and routes it;
 *   - when a request ends (reply.c's reply_done, on whichever thread answers
 *     it: a worker, the group committer, the hold's watcher) its connection
 *     comes back here when nginx asked to keep it (FCGI_KEEP_CONN) and it is
 *     sound, and is re-armed in the set; otherwise it is closed. A parked
 *     long-poll's connection is the hold's until it is answered, then comes
 *     back the same way;
 *   - once a second a sweep shuts down connections silent for too long
 *     (a FRESH one after CHAT_READ_TIMEOUT_MS, an IDLE one after
 *     CHAT_KEEP_IDLE_MS, longer than nginx keeps an idle upstream
 *     connection): the end of stream wakes a worker, which closes it.
 *
 * Who owns a connection is one atomic word per descriptor (slot): its state
 * and a sequence number that every change bumps. A worker takes a FRESH,
 * IDLE or SWEPT connection by compare-and-swap to BUSY; the sweep takes an
 * expired FRESH or IDLE one by compare-and-swap to SWEPT. Only the owner of
 * a BUSY connection closes it, and only after marking it FREE (or, when
 * libfcgi closed it itself, with a compare-and-swap that fails if the
 * number was accepted again meanwhile): a descriptor number is never
 * mistaken for a later connection that got it.
 *
 * Turns: on a store that works on this machine's CPU (SQLite), more
 * workers serving at once than there are CPUs only take turns on them, and
 * every request then wakes a sleeping thread (a context switch each, which
 * cost more than the request's own work). So at most `serving` workers
 * look for requests at once, each keeping its turn from one request to the
 * next; the others wait for a turn. A worker that waits for something else
 * than the CPU gives its turn to another meanwhile: itself, before the
 * group commit it runs for everyone or a check that takes the write lock
 * (workers_wait_begin); or the tick lends it away, every READ_LEND_MS,
 * from a worker that has been reading a request or its body that long (a
 * slow client). A worker without its turn finishes the request it has,
 * then waits for a turn before it looks for the next. On PostgreSQL every
 * call waits for a round trip, so every worker serves.
 *
 * Stopping wakes the workers waiting for a turn (a broadcast), and those
 * blocked in epoll_wait() (or accept(), on an inherited blocking listener)
 * with WAKE_SIGNAL, whatever the listening socket: an inherited one
 * (systemd, spawn-fcgi) must not be shut down.
 */
#ifndef CHAT_FCGI_WORKERS_H
#define CHAT_FCGI_WORKERS_H

#include <stdbool.h>

#include "commit.h"
#include "hold.h"
#include "store.h"

struct workers;

struct workers_opts {
    int threads;
    int serving;               /* at most this many serve at once (0: all) */
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
#define WORKERS_TICK_MS 100   /* how often workers_tick is called */

/*
 * Every WORKERS_TICK_MS: lends away the turn of a worker reading a request
 * or its body that long, and wakes one that has been reading one request
 * for CHAT_READ_TIMEOUT_MS, to drop it; once a second, shuts down
 * connections silent too long (accepted without a request within
 * CHAT_READ_TIMEOUT_MS, kept idle beyond CHAT_KEEP_IDLE_MS).
 */
void workers_tick(struct workers *ws);
/*
 * Called by a worker before a wait that is not for the CPU (a commit, a
 * write lock): it gives its turn to serve to another worker, and waits
 * for one again before it looks for its next request. A no-op on any other
 * thread, and when every worker serves.
 */
void workers_wait_begin(void);
/*
 * Called by a worker around the read of a request's body, which a slow
 * client may trickle in: a read that lasts is lent its turn away as a
 * slow request read is (see above). A no-op on any other thread.
 */
void workers_reading_body(bool reading);
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
