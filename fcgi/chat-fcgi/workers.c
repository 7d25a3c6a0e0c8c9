/*
 * workers.c - chat-fcgi's worker threads (see workers.h).
 *
 * Workers accept connections themselves (listen.c: every read on a
 * connection is bounded) and hand each to libfcgi as an open connection to
 * read the request from. Stopping wakes the workers blocked in accept()
 * with WAKE_SIGNAL, whatever the listening socket: an inherited one
 * (systemd, spawn-fcgi) must not be shut down, and on Linux close() does
 * not wake a thread blocked in accept().
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "api.h"
#include "chat_limits.h"
#include "listen.h"
#include "log.h"
#include "route.h"
#include "util.h"
#include "workers.h"

#define WAKE_SIGNAL SIGUSR1

struct worker;

struct workers {
    atomic_bool stopping;
    int listen_fd;
    int n;                     /* threads started */
    struct worker *w;
};

/* Where a worker is, for the thread that wakes it. */
enum worker_state {
    W_ACCEPT,   /* waiting in accept(): woken by WAKE_SIGNAL when stopping */
    W_READ,     /* libfcgi reads the request: bounded, then woken to drop it */
    W_SERVE,    /* answering: never interrupted */
    W_DONE      /* the thread has ended */
};

struct worker {
    pthread_t thread;
    struct workers *pool;
    struct api_ctx ctx;
    pthread_mutex_t mu;        /* guards the three below */
    enum worker_state state;
    int64_t since;             /* util_now_ms() when the state began */
    bool kicked;               /* WAKE_SIGNAL was sent in this state */
};

/* Interrupts the blocking call of the worker it is sent to; nothing else. */
static void on_wake(int sig)
{
    (void)sig;
}

/*
 * Moves w to state. A wake-up sent for the state it leaves is spent: it
 * was sent under w->mu, so it is now pending (then dropped here) or was
 * delivered, and cannot interrupt what comes next (an accepted connection
 * is always read, a request that was read always answered).
 */
static void worker_enter(struct worker *w, enum worker_state state)
{
    bool kicked;

    pthread_mutex_lock(&w->mu);
    w->state = state;
    w->since = util_now_ms();
    kicked = w->kicked;
    w->kicked = false;
    pthread_mutex_unlock(&w->mu);
    if (kicked) {
        sigset_t wake;
        sigemptyset(&wake);
        sigaddset(&wake, WAKE_SIGNAL);
        pthread_sigmask(SIG_BLOCK, &wake, NULL);
        sigtimedwait(&wake, NULL, &(struct timespec){ 0 });
        pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
    }
}

/*
 * Hands an accepted connection to libfcgi, which reads the begin record
 * and the parameters from it: FCGX_Accept_r reads from an open connection
 * when the request has one (as for a connection kept with FCGI_KEEP_CONN),
 * and the request has no listening socket to accept another on. Detached,
 * a bad connection is closed without lingering. Returns 0 with the request
 * read, or -1 when the connection was bad, stalled or interrupted (libfcgi
 * has closed it).
 */
static int request_read(FCGX_Request *r, int conn)
{
    FCGX_InitRequest(r, -1, 0);
    r->ipcFd = conn;
    r->keepConnection = 1;   /* so that FCGX_Accept_r keeps it open on entry */
    FCGX_Detach(r);
    return FCGX_Accept_r(r) < 0 ? -1 : 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t wake;

    sigemptyset(&wake);
    sigaddset(&wake, WAKE_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
    for (;;) {
        FCGX_Request *r;
        int conn;

        /* Entered before the check: the stopping thread sees W_ACCEPT or we see stopping. */
        worker_enter(w, W_ACCEPT);
        if (atomic_load(&w->pool->stopping))
            break;
        if ((conn = listen_accept(w->pool->listen_fd, CHAT_READ_TIMEOUT_MS)) < 0) {
            if (atomic_load(&w->pool->stopping))
                break;
            if (errno == EINTR)
                continue;
            /* EMFILE and the like: back off instead of spinning. */
            log_warn("accept failed: %s", strerror(errno));
            usleep(50000);
            continue;
        }
        worker_enter(w, W_READ);
        if (!(r = malloc(sizeof *r))) {
            close(conn);
            log_error("out of memory: pausing accepts");
            usleep(100000);
            continue;
        }
        if (request_read(r, conn) < 0) {
            FCGX_Free(r, 1);
            free(r);
            continue;
        }
        worker_enter(w, W_SERVE);
        route_request(&w->ctx, r);
    }
    worker_enter(w, W_DONE);
    return NULL;
}

/*
 * Sends WAKE_SIGNAL to the workers that must be woken: those in accept()
 * when stopping, and those that have been reading one request for longer
 * than CHAT_READ_TIMEOUT_MS (a client that trickles it in). Returns the number
 * of workers still running.
 */
static int wake(struct worker *w, int n, bool stop)
{
    int64_t now = util_now_ms();
    int left = 0;

    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&w[i].mu);
        if (w[i].state != W_DONE)
            left++;
        if ((stop && w[i].state == W_ACCEPT) ||
            (w[i].state == W_READ && now - w[i].since >= CHAT_READ_TIMEOUT_MS)) {
            pthread_kill(w[i].thread, WAKE_SIGNAL);
            w[i].kicked = true;
        }
        pthread_mutex_unlock(&w[i].mu);
    }
    return left;
}

/*
 * Wakes every worker until all have ended, or timeout_ms pass. A signal
 * that lands just before a worker enters accept() interrupts nothing, so
 * it is sent again until the worker is gone. Returns the workers left.
 */
int workers_stop(struct workers *ws, int timeout_ms)
{
    int64_t deadline = util_now_ms() + timeout_ms;
    int left;

    if (!ws)
        return 0;
    atomic_store(&ws->stopping, true);
    while ((left = wake(ws->w, ws->n, true)) > 0 && util_now_ms() < deadline)
        usleep(5000);
    return left;
}


void workers_signals(void)
{
    struct sigaction wake = { .sa_handler = on_wake };
    sigset_t blocked;

    /* Unblocked in the workers only; without SA_RESTART, so it interrupts accept() and read(). */
    sigemptyset(&blocked);
    sigaddset(&blocked, WAKE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&wake.sa_mask);
    sigaction(WAKE_SIGNAL, &wake, NULL);
}

int workers_start(const struct workers_opts *o, struct workers **out, struct chat_fail *f)
{
    struct workers *ws = calloc(1, sizeof *ws);
    int err = 0;

    *out = NULL;
    if (!ws || !(ws->w = calloc((size_t)o->threads, sizeof *ws->w))) {
        free(ws);
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    }
    ws->listen_fd = o->listen_fd;
    for (int i = 0; i < o->threads; i++) {
        struct worker *w = &ws->w[i];
        pthread_mutex_init(&w->mu, NULL);
        w->pool = ws;
        w->ctx.hold = o->hold;
        w->ctx.commit = o->commit;
        if ((err = store_open(&o->store, &w->ctx.store, f)) < 0)
            break;
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            store_close(w->ctx.store);
            err = chat_fail(f, CHAT_EINTERNAL, "cannot start worker thread %d", i);
            break;
        }
        ws->n++;
    }
    if (err < 0) {
        workers_stop(ws, 5000);
        workers_free(ws);
        return err;
    }
    *out = ws;
    return 0;
}

void workers_tick(struct workers *ws)
{
    wake(ws->w, ws->n, false);
}

void workers_free(struct workers *ws)
{
    if (!ws)
        return;
    for (int i = 0; i < ws->n; i++) {
        pthread_join(ws->w[i].thread, NULL);
        store_close(ws->w[i].ctx.store);
    }
    for (int i = 0; i < ws->n; i++)
        pthread_mutex_destroy(&ws->w[i].mu);
    free(ws->w);
    free(ws);
}
