/*
 * chat_fcgi.c - main of the FastCGI program: flags, threads, accept loop.
 *
 * Design:
 *   - a small pool of worker threads accepts requests with libfcgi and
 *     answers short polls at once, each on its own SQLite connection;
 *   - sends are group-committed: those that arrive while one is being
 *     stored are stored together in one transaction (commit.c);
 *   - a long-poll with nothing to return is parked in the hold (hold.c): no
 *     thread waits on it, so one process holds thousands;
 *   - one watcher thread per process notices new rows from any writer and
 *     answers the parked requests (hold.c);
 *   - workers accept connections themselves (listen.c: every read on a
 *     connection is bounded) and hand each to libfcgi as an open
 *     connection to read the request from;
 *   - the main thread waits for SIGTERM/SIGINT, then wakes the workers
 *     blocked in accept() with a signal, answers parked requests as expired
 *     and exits, well within a second. The listening socket is shut down
 *     only when this process opened it: an inherited one (systemd, spawn-
 *     fcgi) belongs to whoever passed it and serves the next process, with
 *     the connections already queued on it. (On Linux, close() does not wake
 *     a thread blocked in accept(), and shutdown() would kill the socket for
 *     its owner too.)
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "api.h"
#include "cli.h"
#include "commit.h"
#include "hold.h"
#include "listen.h"
#include "retain.h"
#include "log.h"
#include "route.h"
#include "store.h"
#include "util.h"

#define VERSION "1.0.0"

/*
 * A connection must deliver each read of its request within this (nginx
 * writes the whole request at once), and a worker may spend at most about
 * this much longer reading a request before it is woken to drop it.
 */
#define READ_TIMEOUT_MS 2000
#define WAKE_SIGNAL SIGUSR1

struct config {
    const char *db_path;
    const char *listen;      /* NULL: inherited socket */
    unsigned socket_mode;
    int threads;
    int backlog;
    int busy_ms;
    bool sync_full;
    struct hold_opts hold;
    struct retain_opts retain;
};

static atomic_bool stopping;
static int listen_fd = -1;

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: chat-fcgi [OPTION]...\n"
        "FastCGI server of the chat: /send/msg, /get/msg (short and long polls), /healthz.\n"
        "\n"
        "  -d, --db PATH          SQLite database, created with the schema when new\n"
        "                         (default: chat.db)\n"
        "  -l, --listen ADDR      unix socket PATH (with a '/'), HOST:PORT or :PORT\n"
        "                         (loopback); without it, the socket inherited from\n"
        "                         systemd (LISTEN_FDS) or spawn-fcgi (fd 0)\n"
        "      --socket-mode MODE permissions of a unix socket, octal (default: 0660)\n"
        "  -t, --threads N        worker threads for short requests (default: 8)\n"
        "      --max-held N       long-polls held at once; beyond, 503 (default: 4096;\n"
        "                         at most what the descriptor limit leaves room for)\n"
        "      --probe-ms N       change probe interval while long-polls wait, 1..10000\n"
        "                         ms (default: 5, at most 200 probes a second)\n"
        "      --busy-ms N        wait for another writer's lock, then 503 (default: 2000)\n"
        "      --sync MODE        normal: a stored message survives any process crash;\n"
        "                         full: also power loss, at a cost (default: normal)\n"
        "      --backlog N        listen queue length (default: 1024)\n"
        "      --retain-age AGE   delete messages older than AGE (30d, 12h, 90m, 45s);\n"
        "                         default: keep them all\n"
        "      --retain-per-room N  keep only the last N messages of each room\n"
        "                         (default: all)\n"
        "      --retain-every S   seconds between retention passes (default: 60)\n"
        "  -v, --verbose          log debug lines\n"
        "  -q, --quiet            log warnings and errors only\n"
        "  -h, --help             show this help and exit\n"
        "  -V, --version          show the version and exit\n"
        "\n"
        "SIGTERM or SIGINT stops it; held long-polls are answered as if their wait expired.\n");
}

static void parse_flags(int argc, char **argv, struct config *c)
{
    enum { OPT_MODE = 256, OPT_MAXHELD, OPT_PROBE, OPT_BUSY, OPT_SYNC, OPT_BACKLOG,
           OPT_RETAIN_AGE, OPT_RETAIN_ROOM, OPT_RETAIN_EVERY };
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "socket-mode", required_argument, NULL, OPT_MODE },
        { "threads", required_argument, NULL, 't' },
        { "max-held", required_argument, NULL, OPT_MAXHELD },
        { "probe-ms", required_argument, NULL, OPT_PROBE },
        { "busy-ms", required_argument, NULL, OPT_BUSY },
        { "sync", required_argument, NULL, OPT_SYNC },
        { "backlog", required_argument, NULL, OPT_BACKLOG },
        { "retain-age", required_argument, NULL, OPT_RETAIN_AGE },
        { "retain-per-room", required_argument, NULL, OPT_RETAIN_ROOM },
        { "retain-every", required_argument, NULL, OPT_RETAIN_EVERY },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    int ch;

    while ((ch = getopt_long(argc, argv, "d:l:t:vqhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': c->db_path = optarg; break;
        case 'l': c->listen = optarg; break;
        case OPT_MODE: {
            char *end;
            unsigned long m = strtoul(optarg, &end, 8);
            if (*end || m > 0777) {
                fprintf(stderr, "chat-fcgi: --socket-mode must be octal, like 0660\n");
                exit(2);
            }
            c->socket_mode = (unsigned)m;
            break;
        }
        case 't': c->threads = cli_int("--threads", optarg, 1, 256); break;
        case OPT_MAXHELD: c->hold.max_held = (size_t)cli_int("--max-held", optarg, 0, 1000000); break;
        case OPT_PROBE: c->hold.probe_ms = cli_int("--probe-ms", optarg, 1, 10000); break;
        case OPT_BUSY: c->busy_ms = cli_int("--busy-ms", optarg, 0, 600000); break;
        case OPT_SYNC: c->sync_full = cli_sync_full(optarg); break;
        case OPT_BACKLOG: c->backlog = cli_int("--backlog", optarg, 1, 65535); break;
        case OPT_RETAIN_AGE:
            if ((c->retain.max_age_ms = retain_parse_age(optarg)) < 0) {
                fprintf(stderr, "chat-fcgi: --retain-age is a number and a unit: 30d, 12h, 90m or 45s\n");
                exit(2);
            }
            break;
        case OPT_RETAIN_ROOM: c->retain.per_room = cli_int("--retain-per-room", optarg, 1, 100000000); break;
        case OPT_RETAIN_EVERY: c->retain.every_s = cli_int("--retain-every", optarg, 1, 86400); break;
        case 'v': log_set_level(LOG_DEBUG); break;
        case 'q': log_set_level(LOG_WARN); break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("chat-fcgi %s\n", VERSION); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chat-fcgi: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        exit(2);
    }
}

/*
 * Makes sure fds 0 to 2 are open, so no socket or database lands on them
 * (fd 0 may be the inherited listening socket: then it is open).
 */
static void ensure_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) < 0) {
            int n = open("/dev/null", O_RDWR);
            if (n >= 0 && n != fd) {
                dup2(n, fd);
                close(n);
            }
        }
    }
}

/* Where a worker is, for the thread that wakes it. */
enum worker_state {
    W_ACCEPT,   /* waiting in accept(): woken by WAKE_SIGNAL when stopping */
    W_READ,     /* libfcgi reads the request: bounded, then woken to drop it */
    W_SERVE,    /* answering: never interrupted */
    W_DONE      /* the thread has ended */
};

struct worker {
    pthread_t thread;
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
        if (atomic_load(&stopping))
            break;
        if ((conn = listen_accept(listen_fd, READ_TIMEOUT_MS)) < 0) {
            if (atomic_load(&stopping))
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
 * than READ_TIMEOUT_MS (a client that trickles it in). Returns the number
 * of workers still running.
 */
static int workers_wake(struct worker *w, int n, bool stop)
{
    int64_t now = util_now_ms();
    int left = 0;

    for (int i = 0; i < n; i++) {
        pthread_mutex_lock(&w[i].mu);
        if (w[i].state != W_DONE)
            left++;
        if ((stop && w[i].state == W_ACCEPT) ||
            (w[i].state == W_READ && now - w[i].since >= READ_TIMEOUT_MS)) {
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
static int workers_stop(struct worker *w, int n, int timeout_ms)
{
    int64_t deadline = util_now_ms() + timeout_ms;
    int left;

    while ((left = workers_wake(w, n, true)) > 0 && util_now_ms() < deadline)
        usleep(5000);
    return left;
}

/* Descriptors open now, or -1 when /proc does not tell. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory's own */
}

/*
 * Caps --max-held by the descriptor limit. Each held long-poll keeps its
 * connection open; a full hold must still leave a descriptor for each
 * worker's connection, the database connections (the database and its
 * WAL each, one shared -shm), the watcher's epoll, eventfd and inotify, and
 * what SQLite opens for a moment (a journal, a temporary file). Without
 * the cap accept() fails with EMFILE, and then no request is answered,
 * instead of a park being refused with 503.
 */
static void cap_held(struct config *c, long fd_limit)
{
    int open_now = open_fds();
    long stores = c->threads + 3;   /* the workers', the watcher's, commit's, retention's */
    long reserve = (open_now > 0 ? open_now : 16) + stores * 3 + c->threads + 16;
    size_t cap;

    if (fd_limit < 0)
        return;
    cap = fd_limit > reserve ? (size_t)(fd_limit - reserve) : 0;
    if (cap < c->hold.max_held) {
        log_warn("--max-held %zu capped to %zu by the descriptor limit (%ld open files, %ld kept "
                 "for the rest); raise it with ulimit -n or LimitNOFILE=",
                 c->hold.max_held, cap, fd_limit, reserve);
        c->hold.max_held = cap;
    }
}

int main(int argc, char **argv)
{
    struct config c = {
        .db_path = "chat.db", .socket_mode = 0660, .threads = 8, .backlog = 1024,
        .busy_ms = 2000,
        .hold = { .max_held = 4096, .probe_ms = 5 },
        .retain = { .every_s = 60 },
    };
    struct retain *retain = NULL;
    struct store_opts so;
    struct chat_fail f;
    struct store *probe = NULL;
    struct hold *hold = NULL;
    struct commit *commit = NULL;
    struct worker *workers;
    struct sigaction wake = { .sa_handler = on_wake };
    sigset_t sigs, blocked;
    long fd_limit;
    int sig, started = 0, left;

    log_set_name("chat-fcgi");
    cli_set_name("chat-fcgi");
    parse_flags(argc, argv, &c);
    ensure_std_fds();
    fd_limit = cli_raise_fd_limit();   /* each held long-poll is a descriptor */
    signal(SIGPIPE, SIG_IGN);
    /*
     * libfcgi allocates and frees a request's buffers on each request, on
     * many threads: keep freed memory instead of giving it back to the
     * kernel and faulting it in again on the next request.
     */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    /*
     * Signals go to the main thread's sigwait(), never to libfcgi's handlers.
     * WAKE_SIGNAL is unblocked in the workers only; its handler is installed
     * before FCGX_Init (which then keeps it), without SA_RESTART so that it
     * interrupts a blocked accept() or read().
     */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    blocked = sigs;
    sigaddset(&blocked, WAKE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &blocked, NULL);
    sigemptyset(&wake.sa_mask);
    sigaction(WAKE_SIGNAL, &wake, NULL);

    if (c.listen)
        listen_fd = listen_open(c.listen, c.backlog, c.socket_mode, &f);
    else if ((listen_fd = listen_inherited()) < 0)
        chat_fail(&f, CHAT_EBADREQ, "no --listen address and no inherited socket (see --help)");
    if (listen_fd < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    so = (struct store_opts){ .path = c.db_path, .busy_ms = c.busy_ms, .sync_full = c.sync_full };
    c.hold.store = so;
    c.retain.store = so;
    /* Create or check the database before accepting anything. */
    if (store_open(&so, &probe, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    store_close(probe);
    if (FCGX_Init() != 0) {
        log_error("libfcgi initialisation failed");
        return 1;
    }
    cap_held(&c, fd_limit);
    if (hold_start(&c.hold, &hold, &f) < 0 || retain_start(&c.retain, &retain, &f) < 0 ||
        commit_open(&(struct commit_opts){ .store = so, .hold = hold, .answer = api_send_answer,
                                           .gather = (size_t)c.threads }, &commit, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    if (!(workers = calloc((size_t)c.threads, sizeof *workers))) {
        log_error("out of memory");
        return 1;
    }
    for (int i = 0; i < c.threads; i++) {
        pthread_mutex_init(&workers[i].mu, NULL);
        workers[i].ctx.hold = hold;
        workers[i].ctx.commit = commit;
        if (store_open(&so, &workers[i].ctx.store, &f) < 0) {
            log_error("%s", f.msg);
            break;
        }
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            log_error("cannot start worker thread %d", i);
            store_close(workers[i].ctx.store);
            break;
        }
        started++;
    }
    if (started == c.threads) {
        log_info("listening on %s with %d threads, database %s, at most %zu held",
                 c.listen ? c.listen : "an inherited socket", c.threads, c.db_path, c.hold.max_held);
        /* Once a second, a worker reading one request for too long is woken to drop it. */
        for (;;) {
            sig = sigtimedwait(&sigs, NULL, &(struct timespec){ .tv_sec = 1 });
            if (sig < 0 && (errno == EAGAIN || errno == EINTR)) {
                workers_wake(workers, started, false);
                continue;
            }
            if (sig != SIGHUP)
                break;
            log_info("SIGHUP ignored: nothing to reload");
        }
        log_info("signal %d: stopping", sig);
    }

    atomic_store(&stopping, true);
    /* Our own socket dies with us: refuse new connections at once. */
    if (c.listen)
        shutdown(listen_fd, SHUT_RDWR);
    if ((left = workers_stop(workers, started, c.busy_ms + 2 * READ_TIMEOUT_MS + 1000)) > 0) {
        log_error("%d worker(s) still busy; exiting without them", left);
        _exit(1);
    }
    for (int i = 0; i < started; i++) {
        pthread_join(workers[i].thread, NULL);
        pthread_mutex_destroy(&workers[i].mu);
        store_close(workers[i].ctx.store);
    }
    free(workers);
    commit_close(commit);
    retain_stop(retain);
    hold_stop(hold);
    close(listen_fd);
    if (c.listen && strchr(c.listen, '/'))
        unlink(c.listen);
    log_info("stopped");
    return started == c.threads ? 0 : 1;
}
