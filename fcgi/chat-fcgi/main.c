/*
 * main.c - main of chat-fcgi, the FastCGI program: flags and start-up.
 *
 * Design:
 *   - a small pool of worker threads (workers.c) accepts requests and
 *     answers short polls at once, each on its own database connection;
 *   - sends are group-committed: those that arrive while one is being
 *     stored are stored together in one transaction (commit.c);
 *   - a long-poll with nothing to return is parked in the hold (hold.c): no
 *     thread waits on it, so one process holds thousands; the process's one
 *     change watcher (common/watch.c) answers the parked requests;
 *   - the main thread waits for SIGTERM/SIGINT, then stops the workers,
 *     answers parked requests as expired and exits, well within a second.
 *     The listening socket is shut down only when this process opened it:
 *     an inherited one (systemd, spawn-fcgi) belongs to whoever passed it
 *     and serves the next process, with the connections already queued on
 *     it; shutdown() would kill it for its owner too.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <fcgiapp.h>

#include "api.h"
#include "chat_limits.h"
#include "cli.h"
#include "commit.h"
#include "hold.h"
#include "listen.h"
#include "retain.h"
#include "log.h"
#include "store.h"
#include "util.h"
#include "workers.h"

#define VERSION "1.0.0"

struct config {
    struct cli_common common; /* listen NULL: an inherited socket */
    int threads;
    int serving;              /* of which serve at once: at most one per CPU on SQLite */
    int backlog;
    struct hold_opts hold;
    struct retain_opts retain;
};

static int listen_fd = -1;

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: chat-fcgi [OPTION]...\n"
        "FastCGI server of the chat: /send/msg, /get/msg (short and long polls), /healthz.\n"
        "\n"
        "  -d, --db PATH|URI      SQLite database, created with the schema when new\n"
        "                         (default: chat.db), or a postgresql:// URI\n"
        "  -l, --listen ADDR      unix socket PATH (with a '/'), HOST:PORT or :PORT\n"
        "                         (loopback); without it, the socket inherited from\n"
        "                         systemd (LISTEN_FDS) or spawn-fcgi (fd 0)\n"
        CLI_SOCKET_HELP
        "  -t, --threads N        worker threads for short requests (default: 8); on\n"
        "                         SQLite at most one per CPU serve at once, the others\n"
        "                         stand in for one that commits or waits on a client\n"
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
    enum { OPT_MAXHELD = 256, OPT_BACKLOG, OPT_RETAIN_AGE, OPT_RETAIN_ROOM,
           OPT_RETAIN_EVERY };
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        { "threads", required_argument, NULL, 't' },
        { "max-held", required_argument, NULL, OPT_MAXHELD },
        { "backlog", required_argument, NULL, OPT_BACKLOG },
        { "retain-age", required_argument, NULL, OPT_RETAIN_AGE },
        { "retain-per-room", required_argument, NULL, OPT_RETAIN_ROOM },
        { "retain-every", required_argument, NULL, OPT_RETAIN_EVERY },
        { NULL, 0, NULL, 0 }
    };
    int ch;

    while ((ch = getopt_long(argc, argv, CLI_COMMON_SHORT "t:", opts, NULL)) != -1) {
        if (cli_common_flag(ch, optarg, &c->common, usage, VERSION))
            continue;
        switch (ch) {
        case 't': c->threads = cli_int("--threads", optarg, 1, 256); break;
        case OPT_MAXHELD: c->hold.max_held = (size_t)cli_int("--max-held", optarg, 0, 1000000); break;
        case OPT_BACKLOG: c->backlog = cli_int("--backlog", optarg, 1, 65535); break;
        case OPT_RETAIN_AGE:
            if ((c->retain.max_age_ms = retain_parse_age(optarg)) < 0) {
                fprintf(stderr, "chat-fcgi: --retain-age is a number and a unit: 30d, 12h, 90m or 45s\n");
                exit(2);
            }
            break;
        case OPT_RETAIN_ROOM: c->retain.per_room = cli_int("--retain-per-room", optarg, 1, 100000000); break;
        case OPT_RETAIN_EVERY: c->retain.every_s = cli_int("--retain-every", optarg, 1, 86400); break;
        default: usage(stderr); exit(2);
        }
    }
    cli_no_operands(argc, argv, usage);
}

/* The CPUs this process may run on (its affinity mask, so taskset and cpusets count). */
static int cpus(void)
{
    cpu_set_t set;
    long n;

    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 && n < 1024 ? (int)n : 1;
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

/* Connections kept open between requests, at most: a quarter of the descriptors, up to CHAT_KEEP_MAX. */
static int keep_max(long fd_limit)
{
    return fd_limit < 0 || fd_limit / 4 > CHAT_KEEP_MAX ? CHAT_KEEP_MAX : (int)(fd_limit / 4);
}

/*
 * Caps --max-held by the descriptor limit. Each held long-poll keeps its
 * connection open; a full hold must still leave a descriptor for each
 * worker's connection, the connections kept between requests, the
 * database connections (the database and its WAL each, one shared -shm),
 * the watcher's epoll, eventfd and inotify, and what SQLite opens for a
 * moment (a journal, a temporary file). Without the cap accept() fails
 * with EMFILE, and then no request is answered, instead of a park being
 * refused with 503.
 */
static void cap_held(struct config *c, long fd_limit)
{
    int open_now = open_fds();
    long stores = c->threads + 3;   /* the workers', the watcher's, commit's, retention's */
    long reserve = (open_now > 0 ? open_now : 16) + stores * 3 + c->threads + keep_max(fd_limit) + 16;
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
        .common = { .db_path = "chat.db", .busy_ms = 2000, .probe_ms = 5, CLI_SOCKET_DEFAULTS },
        .threads = 8, .backlog = 1024,
        .hold = { .max_held = 4096 },
        .retain = { .every_s = 60 },
    };
    struct retain *retain = NULL;
    struct store_opts so;
    struct chat_fail f;
    struct store *probe = NULL;
    struct hold *hold = NULL;
    struct stat made, now;
    bool made_sock;
    struct commit *commit = NULL;
    struct workers *workers = NULL;
    sigset_t sigs;
    long fd_limit;
    int sig = 0, left;

    log_set_name("chat-fcgi");
    cli_set_name("chat-fcgi");
    parse_flags(argc, argv, &c);
    c.hold.probe_ms = c.common.probe_ms;
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
    /* Signals go to the main thread's sigwait(), never to libfcgi's handlers. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    workers_signals();   /* before FCGX_Init, which then keeps the handler */

    if (c.common.listen)
        listen_fd = listen_open(c.common.listen, c.backlog, c.common.socket_mode,
                                c.common.socket_gid, &f);
    else if ((listen_fd = listen_inherited()) < 0)
        chat_fail(&f, CHAT_EBADREQ, "no --listen address and no inherited socket (see --help)");
    if (listen_fd < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    /* The socket file we made, to remove at the end only if it is still ours. */
    made_sock = c.common.listen && listen_is_path(c.common.listen) && lstat(c.common.listen, &made) == 0;
    so = (struct store_opts){ .path = c.common.db_path, .busy_ms = c.common.busy_ms, .sync_full = c.common.sync_full };
    c.hold.store = so;
    c.retain.store = so;
    /* Create or check the database before accepting anything. */
    if (store_open(&so, &probe, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    c.serving = store_remote(probe) || cpus() > c.threads ? c.threads : cpus();
    store_close(probe);
    if (FCGX_Init() != 0) {
        log_error("libfcgi initialisation failed");
        return 1;
    }
    cap_held(&c, fd_limit);
    if (hold_start(&c.hold, &hold, &f) < 0 || retain_start(&c.retain, &retain, &f) < 0 ||
        commit_open(&(struct commit_opts){ .store = so, .hold = hold, .answer = api_send_answer,
                                           /* the sends those serving can read while one commits */
                                           .gather = (size_t)(c.serving < c.threads ? c.serving + 1 : c.threads) },
                    &commit, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }
    if (workers_start(&(struct workers_opts){ .threads = c.threads, .serving = c.serving, .listen_fd = listen_fd,
                                              .fd_limit = fd_limit, .keep_max = keep_max(fd_limit),
                                              .store = so, .hold = hold, .commit = commit },
                      &workers, &f) == 0) {
        log_info("listening on %s with %d threads (%d serving at once), database %s, at most %zu held",
                 c.common.listen ? c.common.listen : "an inherited socket", c.threads, c.serving,
                 c.common.db_path, c.hold.max_held);
        /*
         * Every WORKERS_TICK_MS, a worker reading one request for too long
         * is lent its turn away, or woken to drop it; once a second, the
         * connections silent too long are swept.
         */
        for (;;) {
            sig = sigtimedwait(&sigs, NULL, &(struct timespec){ .tv_nsec = WORKERS_TICK_MS * 1000000L });
            if (sig < 0 && (errno == EAGAIN || errno == EINTR)) {
                workers_tick(workers);
                continue;
            }
            if (sig != SIGHUP)
                break;
            log_info("SIGHUP ignored: nothing to reload");
        }
        log_info("signal %d: stopping", sig);
    } else {
        log_error("%s", f.msg);
    }

    /* Our own socket dies with us: refuse new connections at once. */
    if (c.common.listen)
        shutdown(listen_fd, SHUT_RDWR);
    if ((left = workers_stop(workers, c.common.busy_ms + 2 * CHAT_READ_TIMEOUT_MS + 1000)) > 0) {
        log_error("%d worker(s) still busy; exiting without them", left);
        _exit(1);
    }
    commit_close(commit);
    retain_stop(retain);
    hold_stop(hold);          /* answers the held: their connections close in the pool */
    workers_free(workers);
    close(listen_fd);
    /*
     * Not a socket another process made at the path once ours stopped
     * answering (shutdown above): listen_unix_clear lets it take the path.
     */
    if (made_sock && lstat(c.common.listen, &now) == 0 && now.st_dev == made.st_dev && now.st_ino == made.st_ino)
        unlink(c.common.listen);
    log_info("stopped");
    return workers ? 0 : 1;
}
