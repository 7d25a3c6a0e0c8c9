/*
 * workers.h - the worker threads of chat-fcgi: each accepts a connection,
 * reads its request with libfcgi (bounded in time) and routes it.
 */
#ifndef CHAT_FCGI_WORKERS_H
#define CHAT_FCGI_WORKERS_H

#include "commit.h"
#include "hold.h"
#include "store.h"

struct workers;

struct workers_opts {
    int threads;
    int listen_fd;             /* opened or inherited; never shut down here */
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
/* Once a second: wakes a worker that has been reading one request too long, to drop it. */
void workers_tick(struct workers *ws);
/*
 * Wakes every worker until all have ended, or timeout_ms pass. Returns the
 * workers still running. workers_stop(NULL, ...) returns 0.
 */
int workers_stop(struct workers *ws, int timeout_ms);
/* Joins the ended workers and frees them. workers_free(NULL) is a no-op. */
void workers_free(struct workers *ws);

#endif
