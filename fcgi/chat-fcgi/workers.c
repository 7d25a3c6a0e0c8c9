/*
 * workers.c - chat-fcgi's worker threads and the connections they serve.
 * How it works, connection ownership included, is in workers.h.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "api.h"
#include "chat_limits.h"
#include "listen.h"
#include "log.h"
#include "reply.h"
#include "route.h"
#include "slot.h"
#include "util.h"
#include "workers.h"

#define WAKE_SIGNAL SIGUSR1
#define LISTENER    UINT64_MAX     /* epoll data of the listening socket */
#define READ_LEND_MS WORKERS_TICK_MS  /* a read this long waits for its client: its turn goes to another */

struct worker;

struct workers {
    atomic_bool stopping;
    int listen_fd;
    int epfd;
    int n;                     /* threads started */
    struct worker *w;
    struct slot *slots;        /* by descriptor number */
    int nslots;
    atomic_int max_fd;         /* the highest descriptor seen: the sweep stops there */
    atomic_int idle;           /* connections IDLE now */
    atomic_uint_fast64_t conns; /* connections accepted: the last one's id */
    int keep_max;              /* beyond this many IDLE, a connection is closed instead */
    /* Turns to serve (see workers.h): gated when fewer than the threads. */
    bool gated;
    pthread_mutex_t turn_mu;
    pthread_cond_t turn_free;
    int turns;                 /* free turns; a worker waits for one when none is */
    int64_t swept_ms;          /* when workers_tick last swept */
};

/* Where a worker is, for the thread that wakes it. */
enum worker_state {
    W_ACCEPT,   /* waiting in epoll_wait() or accept(): woken by WAKE_SIGNAL when stopping */
    W_READ,     /* libfcgi reads the request: bounded, then woken to drop it */
    W_BODY,     /* reading the request's body (each read bounded): never interrupted */
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
    bool turn;                 /* it holds a turn to serve (gated pools) */
};

/* The worker of the calling thread; NULL on any other thread. */
static _Thread_local struct worker *self;

/* Interrupts the blocking call of the worker it is sent to; nothing else. */
static void on_wake(int sig)
{
    (void)sig;
}

/*
 * Moves w to state. A wake-up sent for the state it leaves is spent: it
 * was sent under w->mu, so it is now pending (then dropped here) or was
 * delivered, and cannot interrupt what comes next (a taken connection is
 * always read, a request that was read always answered).
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

/* Puts a turn back in the pool, for a worker waiting for one. */
static void turn_give(struct workers *ws)
{
    pthread_mutex_lock(&ws->turn_mu);
    ws->turns++;
    pthread_cond_signal(&ws->turn_free);
    pthread_mutex_unlock(&ws->turn_mu);
}

/*
 * Before w looks for work: waits for a turn unless it holds one (it gave
 * its turn up, or the tick lent it, while it served its last request),
 * or the pool is stopping.
 */
static void turn_hold(struct worker *w)
{
    struct workers *ws = w->pool;
    bool held;

    pthread_mutex_lock(&w->mu);
    held = w->turn;
    pthread_mutex_unlock(&w->mu);
    if (held)
        return;
    pthread_mutex_lock(&ws->turn_mu);
    while (ws->turns <= 0 && !atomic_load(&ws->stopping))
        pthread_cond_wait(&ws->turn_free, &ws->turn_mu);
    ws->turns--;
    pthread_mutex_unlock(&ws->turn_mu);
    pthread_mutex_lock(&w->mu);
    w->turn = true;
    pthread_mutex_unlock(&w->mu);
}

/* Gives w's turn to another worker, when w holds one. Called with w->mu held. */
static void turn_lend(struct worker *w)
{
    if (w->turn) {
        w->turn = false;
        turn_give(w->pool);
    }
}

void workers_wait_begin(void)
{
    if (self && self->pool->gated) {
        pthread_mutex_lock(&self->mu);
        turn_lend(self);
        pthread_mutex_unlock(&self->mu);
    }
}

void workers_reading_body(bool reading)
{
    if (self)
        worker_enter(self, reading ? W_BODY : W_SERVE);
}

/* Arms fd in the set (registered already, or added when add is set). Returns 0 or -1. */
static int conn_arm(struct workers *ws, int fd, bool add)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.u64 = (uint64_t)fd };
    return epoll_ctl(ws->epfd, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
}

/* Marks the BUSY connection fd as gone (it is about to be closed) and closes it when close_it. */
static void conn_forget(struct workers *ws, int fd, bool close_it)
{
    struct slot *s = &ws->slots[fd];

    atomic_store(&s->word, word_make(atomic_load(&s->word), C_FREE));
    if (close_it)
        close(fd);
}

/*
 * A new connection: FRESH in the set. Its slot may still say BUSY when
 * libfcgi closed the number's previous connection itself (request_read
 * below): the store replaces that, and the late compare-and-swap there
 * then fails.
 */
static void conn_add(struct workers *ws, int fd)
{
    struct slot *s;
    int max;

    if (fd >= ws->nslots) {   /* beyond the descriptor limit read at start: cannot be tracked */
        close(fd);
        return;
    }
    s = &ws->slots[fd];
    s->conn = atomic_fetch_add(&ws->conns, 1) + 1;
    atomic_store(&s->since, util_now_ms());
    /* Publishes conn too: a worker reads it after taking the slot. */
    atomic_store(&s->word, word_make(atomic_load(&s->word), C_FRESH));
    for (max = atomic_load(&ws->max_fd); fd > max && !atomic_compare_exchange_weak(&ws->max_fd, &max, fd); )
        ;
    if (conn_arm(ws, fd, true) < 0) {
        log_warn("cannot watch a connection: %s", strerror(errno));
        conn_forget(ws, fd, true);
    }
}

/*
 * The keeper of reply.h: a request on fd has ended. Called before libfcgi
 * closes fd (open false), or after the request was freed with fd still
 * open (open true): then it is kept for the next request, or closed when
 * the pool is stopping or holds keep_max idle connections already.
 */
static void conn_done(void *ctx, int fd, bool open)
{
    struct workers *ws = ctx;
    struct slot *s;

    if (fd < 0 || fd >= ws->nslots)
        return;
    s = &ws->slots[fd];
    if (!open) {
        conn_forget(ws, fd, false);
        return;
    }
    if (atomic_load(&ws->stopping) || atomic_fetch_add(&ws->idle, 1) >= ws->keep_max) {
        if (!atomic_load(&ws->stopping))
            atomic_fetch_sub(&ws->idle, 1);
        conn_forget(ws, fd, true);
        return;
    }
    atomic_store(&s->since, util_now_ms());
    atomic_store(&s->word, word_make(atomic_load(&s->word), C_IDLE));
    if (conn_arm(ws, fd, false) < 0) {
        /* Taken back at once: nobody else can have it, the set never reported it. */
        atomic_fetch_sub(&ws->idle, 1);
        conn_forget(ws, fd, true);
    }
}

/*
 * Takes fd, which epoll reported, for this worker. Returns its state
 * before (FRESH, IDLE or SWEPT) with the slot now BUSY and *word set to
 * the new word, or C_FREE when it was not to be taken.
 */
static enum conn_state conn_take(struct workers *ws, int fd, uint64_t *word)
{
    struct slot *s;
    uint64_t old;

    if (fd < 0 || fd >= ws->nslots)
        return C_FREE;
    s = &ws->slots[fd];
    old = atomic_load(&s->word);
    for (;;) {
        enum conn_state st = word_state(old);
        if (st != C_FRESH && st != C_IDLE && st != C_SWEPT)
            return C_FREE;
        *word = word_make(old, C_BUSY);
        if (atomic_compare_exchange_weak(&s->word, &old, *word)) {
            if (st == C_IDLE)
                atomic_fetch_sub(&ws->idle, 1);
            return st;
        }
    }
}

/*
 * Hands the open connection conn to libfcgi, which reads the begin record
 * and the parameters from it: FCGX_Accept_r reads from an open connection
 * when the request has one (as for a connection kept with FCGI_KEEP_CONN),
 * and the request has no listening socket to accept another on. Detached,
 * a bad connection is closed without lingering. Returns 0 with the request
 * read, or -1 when the connection was bad, stalled, ended or interrupted
 * (libfcgi has closed it).
 */
static int request_read(FCGX_Request *r, int conn)
{
    FCGX_InitRequest(r, -1, 0);
    r->ipcFd = conn;
    r->keepConnection = 1;   /* so that FCGX_Accept_r keeps it open on entry */
    FCGX_Detach(r);
    return FCGX_Accept_r(r) < 0 ? -1 : 0;
}

/* The listening socket was readable: one connection accepted into the set. */
static void accept_one(struct worker *w)
{
    struct workers *ws = w->pool;
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = LISTENER };
    /* A stalled nginx must stall neither a worker nor the hold's fan-out for long. */
    int conn = listen_accept(ws->listen_fd, CHAT_READ_TIMEOUT_MS, CHAT_HOLD_WRITE_MS);
    int err = errno;

    if (conn < 0 && err != EAGAIN && err != EINTR && !atomic_load(&ws->stopping)) {
        /* EMFILE and the like: back off before the next try instead of spinning. */
        log_warn("accept failed: %s", strerror(err));
        usleep(50000);
    }
    /* Re-armed before this connection is served, so that another worker takes the next. */
    epoll_ctl(ws->epfd, EPOLL_CTL_MOD, ws->listen_fd, &ev);
    if (conn >= 0)
        conn_add(ws, conn);
}

/* A connection was readable: its request read and routed, or the connection closed. */
static void serve(struct worker *w, int fd, uint32_t events)
{
    struct workers *ws = w->pool;
    enum conn_state was;
    FCGX_Request *r;
    uint64_t word;

    if ((was = conn_take(ws, fd, &word)) == C_FREE)
        return;
    /* Swept, or a kept connection that nginx closed (it never half-closes one it may reuse). */
    if (was == C_SWEPT || (was == C_IDLE && (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))) {
        conn_forget(ws, fd, true);
        return;
    }
    worker_enter(w, W_READ);
    if (!(r = malloc(sizeof *r))) {
        conn_forget(ws, fd, true);
        log_error("out of memory: pausing");
        usleep(100000);
        return;
    }
    if (request_read(r, fd) < 0) {
        /* libfcgi closed fd: the number may be a new connection's already. */
        uint64_t busy = word;
        atomic_compare_exchange_strong(&ws->slots[fd].word, &busy, word_make(word, C_FREE));
        FCGX_Free(r, 0);
        free(r);
        return;
    }
    worker_enter(w, W_SERVE);
    w->ctx.conn = ws->slots[fd].conn;
    route_request(&w->ctx, r);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t wake;

    sigemptyset(&wake);
    sigaddset(&wake, WAKE_SIGNAL);
    pthread_sigmask(SIG_UNBLOCK, &wake, NULL);
    self = w;
    for (;;) {
        struct epoll_event ev;
        int n;

        /* Entered before the check: the stopping thread sees W_ACCEPT or we see stopping. */
        worker_enter(w, W_ACCEPT);
        if (w->pool->gated)
            turn_hold(w);
        if (atomic_load(&w->pool->stopping))
            break;
        if ((n = epoll_wait(w->pool->epfd, &ev, 1, -1)) < 0) {
            if (atomic_load(&w->pool->stopping))
                break;
            if (errno != EINTR) {
                log_warn("epoll_wait failed: %s", strerror(errno));
                usleep(50000);
            }
            continue;
        }
        if (n == 0)
            continue;
        if (ev.data.u64 == LISTENER)
            accept_one(w);
        else
            serve(w, (int)ev.data.u64, ev.events);
    }
    worker_enter(w, W_DONE);
    return NULL;
}

/*
 * Sends WAKE_SIGNAL to the workers that must be woken: those waiting for
 * work when stopping, and those that have been reading one request for
 * longer than CHAT_READ_TIMEOUT_MS (a client that trickles it in). One
 * reading for longer than READ_LEND_MS waits for its client, not for the
 * CPU: its turn to serve goes to another worker meanwhile. Returns the
 * number of workers still running.
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
        if ((w[i].state == W_READ || w[i].state == W_BODY) && now - w[i].since >= READ_LEND_MS)
            turn_lend(&w[i]);
        pthread_mutex_unlock(&w[i].mu);
    }
    return left;
}

/*
 * Shuts down the connections that have been silent too long: FRESH ones
 * that sent no request within CHAT_READ_TIMEOUT_MS, IDLE ones kept past
 * CHAT_KEEP_IDLE_MS. The end of stream wakes a worker, which closes them.
 */
static void sweep(struct workers *ws)
{
    int64_t now = util_now_ms();
    int max = atomic_load(&ws->max_fd);

    for (int fd = 0; fd <= max && fd < ws->nslots; fd++) {
        struct slot *s = &ws->slots[fd];
        uint64_t word = atomic_load(&s->word);
        enum conn_state st = word_state(word);
        int64_t limit = st == C_FRESH ? CHAT_READ_TIMEOUT_MS : CHAT_KEEP_IDLE_MS;

        if ((st != C_FRESH && st != C_IDLE) || now - atomic_load(&s->since) < limit)
            continue;
        /* Fails when a worker took it meanwhile (the sequence moved). */
        if (atomic_compare_exchange_strong(&s->word, &word, word_make(word, C_SWEPT))) {
            if (st == C_IDLE)
                atomic_fetch_sub(&ws->idle, 1);
            shutdown(fd, SHUT_RDWR);
        }
    }
}

/*
 * Wakes every worker until all have ended, or timeout_ms pass. A signal
 * that lands just before a worker enters epoll_wait() interrupts nothing,
 * so it is sent again until the worker is gone. Returns the workers left.
 */
int workers_stop(struct workers *ws, int timeout_ms)
{
    int64_t deadline = util_now_ms() + timeout_ms;
    int left;

    if (!ws)
        return 0;
    atomic_store(&ws->stopping, true);
    pthread_mutex_lock(&ws->turn_mu);
    pthread_cond_broadcast(&ws->turn_free);
    pthread_mutex_unlock(&ws->turn_mu);
    while ((left = wake(ws->w, ws->n, true)) > 0 && util_now_ms() < deadline)
        usleep(5000);
    return left;
}


void workers_signals(void)
{
    struct sigaction wake = { .sa_handler = on_wake };
    sigset_t blocked;

    /* Unblocked in the workers only; without SA_RESTART, so it interrupts epoll_wait(), accept() and read(). */
    sigemptyset(&blocked);
    sigaddset(&blocked, WAKE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&wake.sa_mask);
    sigaction(WAKE_SIGNAL, &wake, NULL);
}

int workers_start(const struct workers_opts *o, struct workers **out, struct chat_fail *f)
{
    struct workers *ws = calloc(1, sizeof *ws);
    struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = LISTENER };
    int err = 0;

    *out = NULL;
    if (!ws)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    ws->listen_fd = o->listen_fd;
    ws->epfd = -1;
    ws->keep_max = o->keep_max;
    ws->turns = o->serving > 0 && o->serving < o->threads ? o->serving : o->threads;
    ws->gated = ws->turns < o->threads;
    pthread_mutex_init(&ws->turn_mu, NULL);
    pthread_cond_init(&ws->turn_free, NULL);
    ws->nslots = o->fd_limit > 0 && o->fd_limit < (1 << 22) ? (int)o->fd_limit : (1 << 20);
    atomic_store(&ws->max_fd, -1);
    /* Untouched pages of a large calloc cost nothing: only the numbers in use are. */
    if (!(ws->w = calloc((size_t)o->threads, sizeof *ws->w)) ||
        !(ws->slots = calloc((size_t)ws->nslots, sizeof *ws->slots))) {
        err = chat_fail(f, CHAT_EUNAVAIL, "out of memory");
        goto fail;
    }
    if ((ws->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
        epoll_ctl(ws->epfd, EPOLL_CTL_ADD, ws->listen_fd, &ev) < 0) {
        err = chat_fail(f, CHAT_EINTERNAL, "cannot watch the listening socket: %s", strerror(errno));
        goto fail;
    }
    reply_keeper(conn_done, ws);
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
fail:
    if (ws->epfd >= 0)
        close(ws->epfd);
    pthread_cond_destroy(&ws->turn_free);
    pthread_mutex_destroy(&ws->turn_mu);
    free(ws->slots);
    free(ws->w);
    free(ws);
    return err;
}

void workers_tick(struct workers *ws)
{
    int64_t now = util_now_ms();

    wake(ws->w, ws->n, false);
    if (now - ws->swept_ms >= 1000) {
        ws->swept_ms = now;
        sweep(ws);
    }
}

int workers_kept(struct workers *ws)
{
    return ws ? atomic_load(&ws->idle) : 0;
}

void workers_free(struct workers *ws)
{
    int max;

    if (!ws)
        return;
    reply_keeper(NULL, NULL);
    for (int i = 0; i < ws->n; i++) {
        pthread_join(ws->w[i].thread, NULL);
        store_close(ws->w[i].ctx.store);
    }
    for (int i = 0; i < ws->n; i++)
        pthread_mutex_destroy(&ws->w[i].mu);
    /* Every connection still in the set; the BUSY ones were ended by their owners. */
    max = atomic_load(&ws->max_fd);
    for (int fd = 0; fd <= max && fd < ws->nslots; fd++) {
        enum conn_state st = word_state(atomic_load(&ws->slots[fd].word));
        if (st == C_FRESH || st == C_IDLE || st == C_SWEPT)
            close(fd);
    }
    close(ws->epfd);
    pthread_cond_destroy(&ws->turn_free);
    pthread_mutex_destroy(&ws->turn_mu);
    free(ws->slots);
    free(ws->w);
    free(ws);
}
