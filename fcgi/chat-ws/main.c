/*
 * main.c - main of chat-ws, the push companion: flags, start-up, and the
 * libwebsockets event loop that owns every connection: WebSockets at /ws
 * (SPEC section 4) and server-sent events streams at /events (section 8).
 *
 * Design:
 *   - one event loop (libwebsockets on libev) owns every connection; nothing in it
 *     waits for SQLite's write lock: sends go to the writer thread
 *     (writer.c), new rows come from the feed (feed.c, on the shared
 *     watcher), each read once and rendered once, and both wake the loop
 *     with lws_cancel_service();
 *   - a connection (conn.c) first replays the room's stored messages after
 *     its cursor (or the last `tail`) in chunks (replay.c), then goes live
 *     in the room index (rooms.c); its cursor drops anything already
 *     replayed, so there is no gap and no duplicate between the two;
 *   - each connection's queue is bounded: a subscriber that falls behind
 *     is closed (1008; a stream is ended) and resumes by id when it returns;
 *   - a handshake is checked before it is accepted and refused with a real
 *     JSON answer (handshake.c); plain HTTP (/metrics, GET /ws) in http.c;
 *     the transports themselves in ws.c and sse.c, which share the rest;
 *   - behind authentication nginx sets X-Chat-User (never the client's), and
 *     that name is the user of every message the socket sends.
 */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <ev.h>
#include <libwebsockets.h>

#include "chat_limits.h"
#include "cli.h"
#include "conn.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "render.h"
#include "rooms.h"
#include "server.h"
#include "sse.h"
#include "util.h"
#include "ws.h"

#define VERSION "1.0.0"
#define FD_RESERVE 64            /* descriptors kept for the database, logs and nginx's new sockets */

struct server srv;

/* Hands the feed's new rows to the live subscribers of their rooms. */
static void deliver_feed(void)
{
    struct feed_msg **msgs;
    size_t n;

    feed_take(srv.feed, &msgs, &n);
    rooms_deliver(msgs, n);
    for (size_t i = 0; i < n; i++)
        feed_msg_unref(msgs[i]);
    free(msgs);
}

/* Tells senders what the writer found: a repeated cid, or a refusal. */
static void deliver_results(void)
{
    struct writer_result *res;
    size_t n;

    writer_take(srv.writer, &res, &n);
    for (size_t i = 0; i < n; i++) {
        struct conn *c = conn_find(res[i].conn);
        size_t len = 0;
        char *json;
        if (!c)
            continue;
        if (res[i].fail.code) {
            conn_error(c, &res[i].fail);
        } else {
            json = render_ws_duplicate(res[i].id, &len);
            conn_reply(c, json, len);
        }
    }
    free(res);
}

/*
 * A connection accepted on a unix socket (nginx's) may queue as much in the
 * kernel as loopback TCP would (its buffers grow to 4 MiB on Debian):
 * otherwise a client that lags behind nginx a moment reaches --max-queue
 * sooner than over TCP. The kernel caps it at net.core.wmem_max (208 KiB
 * on stock Debian, which doubles the default); TCP's own is left to grow.
 */
static void unix_sndbuf(int fd)
{
    int domain = 0, size = 2 << 20;   /* the kernel doubles it */
    socklen_t len = sizeof domain;

    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static int callback_chat(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    struct conn *c = user, *k;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return ws_confirm_upgrade(wsi, in);
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(wsi, c);
    case LWS_CALLBACK_HTTP:
        return http_serve(wsi, c, in);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return sse_writable(c);
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:   /* the end of an HTTP request (a stream's too) */
    case LWS_CALLBACK_CLOSED_HTTP:
        if (c)
            conn_gone(c);
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        conn_open(wsi, c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return ws_receive(c, in, len);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:   /* lws echoes it */
    case LWS_CALLBACK_WS_SERVER_DROP_PROTOCOL:   /* lws is closing it */
        if (c && c->established)
            ws_closing(c);
        return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ws_writable(c);
    case LWS_CALLBACK_CLOSED:
        conn_gone(c);
        return 0;
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION:
        unix_sndbuf((int)(lws_intptr_t)in);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        /* Each vhost hears it: one of them does the work. */
        if (!srv.ctx || lws_get_vhost(wsi) != srv.vhost)
            return 0;
        deliver_results();
        deliver_feed();
        if (srv.stop_signal && !srv.closing_all) {
            srv.closing_all = true;
            LIST_FOREACH(k, &srv.conns, all)
                conn_close_later(k, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
        }
        return 0;
    default:
        return 0;
    }
}

/*
 * Reads of 1 KiB; a write goes to the socket whole, up to 64 KiB (with
 * tx_packet_size 0 libwebsockets would send 1 KiB a turn of the loop and
 * copy the rest aside: a replay or a long message took many turns).
 */
static const struct lws_protocols protocols[] = {
    { "chat", callback_chat, sizeof(struct conn), 1024, 0, NULL, 65536 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---- start-up ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: chat-ws [OPTION]...\n"
        "Push companion of the chat: WebSockets at ws://HOST/ws?room=R&index=N (or &tail=T),\n"
        "server-sent events at http://HOST/events?room=R&index=N (or &tail=T).\n"
        "\n"
        "  -d, --db PATH|URI      SQLite database shared with chat-fcgi (default: chat.db),\n"
        "                         or a postgresql:// URI\n"
        "  -l, --listen ADDR      unix socket PATH (with a '/'), HOST:PORT or :PORT\n"
        "                         (loopback) to listen on (default: 127.0.0.1:8081);\n"
        "                         up to %d, each given its own --listen\n"
        CLI_SOCKET_HELP
        "      --origin LIST      comma-separated Origin allow-list (default: any)\n"
        "      --max-conns N      connections open at once (sockets and streams); beyond,\n"
        "                         a handshake gets 503 (default: the descriptor limit less %d)\n"
        "      --max-streams N    event streams open at once, within --max-conns; beyond,\n"
        "                         a 200 stream with event: error 503 (default: --max-conns)\n"
        "      --max-queue N      frames queued for one client before it is closed\n"
        "                         with 1008 (a stream: ended) as too slow (default: 1024)\n"
        "      --sse-ping-secs N  write \": ping\" to a stream idle this long (default: 15)\n"
        "      --ping-secs N      ping a connection idle this long; drop it when no pong\n"
        "                         comes within as long again, at most 10 s (default: 30)\n"
        "      --handshake-secs N drop a connection whose handshake takes longer (default: 10)\n"
        "      --max-sends N      messages one connection may send a second, in bursts\n"
        "                         of twice as many; beyond, an error frame 429; 0: no\n"
        "                         limit (default: 20; make run passes 0)\n"
        "      --probe-ms N       change probe interval while clients listen, 1..10000 ms\n"
        "                         (default: 5)\n"
        "      --busy-ms N        wait for another writer's lock, then refuse (default: 2000)\n"
        "      --sync MODE        normal or full, as chat-fcgi (default: normal)\n"
        "  -v, --verbose          log debug lines\n"
        "  -q, --quiet            log warnings and errors only\n"
        "  -h, --help             show this help and exit\n"
        "  -V, --version          show the version and exit\n"
        "\n"
        "A refused handshake, and GET /ws without Upgrade, get a JSON answer: 400 (room,\n"
        "index or tail), 403 (Origin), 503 (full, stopping); 426 when it would be accepted.\n"
        "Behind authentication nginx sets X-Chat-User to the name it authenticated: it\n"
        "becomes the user of every message the socket sends (a different user is a 403\n"
        "error frame). Listen where only nginx can connect: the header is trusted.\n"
        "An event stream with a bad room, index, tail or Last-Event-ID gets 400 JSON.\n"
        "SIGTERM or SIGINT closes every connection with 1001, ends every stream, and stops.\n",
        WS_LISTEN_MAX, FD_RESERVE);
}

static void parse_flags(int argc, char **argv, struct config *c)
{
    enum { OPT_ORIGIN = 256, OPT_CONNS, OPT_QUEUE, OPT_PING, OPT_HANDSHAKE, OPT_SENDS, OPT_STREAMS,
           OPT_SSE_PING };
    static const struct option opts[] = {
        CLI_COMMON_OPTIONS,
        { "origin", required_argument, NULL, OPT_ORIGIN },
        { "max-conns", required_argument, NULL, OPT_CONNS },
        { "max-queue", required_argument, NULL, OPT_QUEUE },
        { "ping-secs", required_argument, NULL, OPT_PING },
        { "handshake-secs", required_argument, NULL, OPT_HANDSHAKE },
        { "max-sends", required_argument, NULL, OPT_SENDS },
        { "max-streams", required_argument, NULL, OPT_STREAMS },
        { "sse-ping-secs", required_argument, NULL, OPT_SSE_PING },
        { NULL, 0, NULL, 0 }
    };
    int ch;

    while ((ch = getopt_long(argc, argv, CLI_COMMON_SHORT, opts, NULL)) != -1) {
        if (ch == 'l') {         /* chat-ws's own: it may listen on several */
            if (c->nlisten == WS_LISTEN_MAX) {
                fprintf(stderr, "chat-ws: at most %d --listen addresses\n", WS_LISTEN_MAX);
                exit(2);
            }
            c->listen[c->nlisten++] = optarg;
            continue;
        }
        if (cli_common_flag(ch, optarg, &c->common, usage, VERSION))
            continue;
        switch (ch) {
        case OPT_ORIGIN: c->origins = optarg; break;
        case OPT_CONNS: c->max_conns = cli_int("--max-conns", optarg, 1, 1000000); break;
        case OPT_QUEUE: c->max_queue = (unsigned)cli_int("--max-queue", optarg, CHAT_REPLAY_CHUNK, 1000000); break;
        case OPT_PING: c->ping_secs = cli_int("--ping-secs", optarg, 1, 3600); break;
        case OPT_HANDSHAKE: c->handshake_secs = cli_int("--handshake-secs", optarg, 1, 600); break;
        case OPT_SENDS: c->sends_per_sec = cli_int("--max-sends", optarg, 0, 100000); break;
        case OPT_STREAMS: c->max_streams = cli_int("--max-streams", optarg, 1, 1000000); break;
        case OPT_SSE_PING: c->sse_ping_secs = cli_int("--sse-ping-secs", optarg, 1, 3600); break;
        default: usage(stderr); exit(2);
        }
    }
    cli_no_operands(argc, argv, usage);
    if (!c->nlisten)
        c->listen[c->nlisten++] = "127.0.0.1:8081";
    for (int i = 0; i < c->nlisten; i++) {
        struct chat_fail f;
        char host[64];
        int port;
        bool v6;
        if (!listen_is_path(c->listen[i]) &&
            (listen_split(c->listen[i], host, sizeof host, &port, &v6, &f) < 0 || v6)) {
            fprintf(stderr, "chat-ws: --listen %s: must be PATH, HOST:PORT or :PORT, with an IPv4 HOST\n",
                    c->listen[i]);
            exit(2);
        }
    }
}

static void on_signal(int sig)
{
    (void)sig;
    srv.stop_signal = 1;
    if (srv.ctx)
        lws_cancel_service(srv.ctx);
}

/*
 * While stopping, wakes the loop every 50 ms so the deadline is kept. A
 * libev timer of its own: lws's plugin does not move its one timer earlier
 * for a new lws_sul, so an lws timer may fire up to sse.c's 250 ms tick late.
 */
static void on_stop_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)loop, (void)w, (void)revents;
}

/* The feed and writer threads wake the loop; never after the context is gone. */
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static bool loop_gone;

static void wake_loop(void *ctx)
{
    pthread_mutex_lock(&wake_lock);
    if (!loop_gone)
        lws_cancel_service(ctx);
    pthread_mutex_unlock(&wake_lock);
}

static void lws_log_line(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    log_msg(level == LLL_ERR ? LOG_ERROR : LOG_WARN, "libwebsockets: %.*s", (int)n, line);
}

/*
 * Listens on the i-th --listen address as a vhost of the context: a unix
 * socket (a path) or HOST:PORT, both checked by parse_flags. A unix
 * socket: beside nginx, a WebSocket or event delivery costs a fifth to a
 * quarter less CPU than over loopback TCP (README, "Details"); lws binds
 * it (port 0 and LWS_SERVER_OPTION_UNIX_SOCK) after listen_unix_clear has
 * removed a stale socket there. Returns 0, or -1 after logging why.
 */
static int listen_vhost(const struct lws_context_creation_info *base, int i)
{
    /* lws keeps iface and vhost_name by pointer for the context's life. */
    static char hosts[WS_LISTEN_MAX][64];
    struct lws_context_creation_info info = *base;
    const struct cli_common *cc = &srv.cfg.common;
    const char *addr = srv.cfg.listen[i];
    bool unix_path = listen_is_path(addr), v6;
    struct chat_fail f;
    char *host = hosts[i];
    mode_t old_mask = 0;
    int port;
    struct lws_vhost *vh;

    info.vhost_name = addr;
    /* Without it, lws runs on when a bind fails, with no listener. */
    info.options |= LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (unix_path) {
        if (listen_unix_clear(addr, &f) < 0) {
            log_error("%s", f.msg);
            return -1;
        }
        info.port = 0;
        info.iface = addr;
        info.options |= LWS_SERVER_OPTION_UNIX_SOCK;
        /* No window in which the socket exists with looser permissions. */
        old_mask = umask(0777 & ~cc->socket_mode);
    } else {
        if (listen_split(addr, host, sizeof hosts[i], &port, &v6, &f) < 0)
            return -1;   /* not reached: parse_flags checked it */
        info.port = port;
        info.iface = host;
    }
    vh = lws_create_vhost(srv.ctx, &info);
    if (unix_path)
        umask(old_mask);
    if (!vh) {
        log_error("cannot listen on %s", addr);
        return -1;
    }
    if (!srv.vhost)
        srv.vhost = vh;
    if (unix_path && listen_unix_own(addr, cc->socket_mode, cc->socket_gid, &f) < 0) {
        log_error("%s", f.msg);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct config *c = &srv.cfg;
    struct lws_context_creation_info info;
    struct store_opts so;
    struct chat_fail f;
    static lws_retry_bo_t retry;
    struct ev_loop *loop = NULL;
    int rc = 1;

    *c = (struct config){ .common = { .db_path = "chat.db", .probe_ms = 5, .busy_ms = 2000,
                                      CLI_SOCKET_DEFAULTS },
                          .ping_secs = 30, .handshake_secs = 10, .max_queue = 1024,
                          .sends_per_sec = 20, .sse_ping_secs = 15 };
    log_set_name("chat-ws");
    cli_set_name("chat-ws");
    parse_flags(argc, argv, c);
    cli_raise_fd_limit();   /* each socket is a descriptor */
    {
        /* Beyond the descriptors, accept() would fail: answer 503 before that. */
        struct rlimit rl;
        int cap = 1000000;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            cap = rl.rlim_cur > FD_RESERVE + 1000000 ? 1000000 :
                  rl.rlim_cur > 2 * FD_RESERVE ? (int)rl.rlim_cur - FD_RESERVE : FD_RESERVE;
        if (c->max_conns == 0 || c->max_conns > cap) {
            if (c->max_conns > cap)
                log_warn("--max-conns %d is above the descriptor limit: %d", c->max_conns, cap);
            c->max_conns = cap;
        }
        if (c->max_streams == 0 || c->max_streams > c->max_conns)
            c->max_streams = c->max_conns;
    }
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);

    so = (struct store_opts){ .path = c->common.db_path, .busy_ms = c->common.busy_ms,
                              .sync_full = c->common.sync_full };
    if (store_open(&so, &srv.store, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }

    retry.secs_since_valid_ping = (uint16_t)c->ping_secs;
    retry.secs_since_valid_hangup = (uint16_t)(c->ping_secs + (c->ping_secs < 10 ? c->ping_secs : 10));
    memset(&info, 0, sizeof info);
    /* The context first, then a vhost for each --listen address. */
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.protocols = protocols;
    /* A handshake that does not complete: headers held too long, or none sent. */
    info.timeout_secs = (unsigned)c->handshake_secs;
    info.timeout_secs_ah_idle = (unsigned)c->handshake_secs;
    info.keepalive_timeout = c->handshake_secs;
    info.retry_and_idle_policy = &retry;
    info.pt_serv_buf_size = 4096;
    /*
     * A request's line and headers, held only while its handshake is read:
     * room for nginx's longest request line (16 KiB; nginx passes on only
     * the headers chat-ws reads). lws's 4 KiB would refuse a long query,
     * and nginx say 503 to what retrying cannot cure.
     */
    info.max_http_header_data = 20480;
    /*
     * The loop is libev's on epoll (lws's evlib_ev plugin), not lws's own
     * poll(): a poll() walks every socket each time it waits, about a
     * third of chat-ws's CPU in a fan-out to 1,000 sockets. Epoll's cost
     * was an epoll_ctl each time lws turned POLLOUT on and off for a
     * write, which a live frame no longer needs (conn_write_soon).
     */
    if (!(loop = ev_loop_new(EVBACKEND_EPOLL))) {
        log_error("cannot start the event loop");
        goto out;
    }
    info.options |= LWS_SERVER_OPTION_LIBEV;
    info.foreign_loops = (void *[]){ loop };
    if (!(srv.ctx = lws_create_context(&info))) {
        log_error("cannot start libwebsockets on libev (its plugin is Debian's libwebsockets-evlib-ev)");
        goto out;
    }
    for (int i = 0; i < c->nlisten; i++)
        if (listen_vhost(&info, i) < 0)
            goto out;
    if (sse_start() < 0) {
        log_error("out of memory");
        goto out;
    }
    {
        struct feed_opts fo = { .store = so, .probe_ms = c->common.probe_ms, .wake = wake_loop,
                                .wake_ctx = srv.ctx };
        struct writer_opts wo;
        if (feed_start(&fo, &srv.feed, &f) < 0) {
            log_error("%s", f.msg);
            goto out;
        }
        wo = (struct writer_opts){ .store = so, .feed = srv.feed,
                                   .wake = wake_loop, .wake_ctx = srv.ctx };
        if (writer_start(&wo, &srv.writer, &f) < 0) {
            log_error("%s", f.msg);
            goto out;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    {
        char on[WS_LISTEN_MAX * (PATH_MAX + 2)] = "";   /* the addresses, "A, B" */
        for (int i = 0; i < c->nlisten; i++)
            snprintf(on + strlen(on), sizeof on - strlen(on), "%s%s", i ? ", " : "", c->listen[i]);
        log_info("listening on %s, database %s", on, c->common.db_path);
    }

    {
        int64_t deadline = 0;
        ev_timer stop_tick;
        /* libev aborts on an epoll failure it cannot survive: no error to test here. */
        for (;;) {
            ev_run(loop, EVRUN_ONCE);
            if (srv.stop_signal) {
                if (!deadline) {
                    deadline = util_now_ms() + 1000;
                    ev_timer_init(&stop_tick, on_stop_tick, 0.05, 0.05);
                    ev_timer_start(loop, &stop_tick);
                    lws_cancel_service(srv.ctx);
                }
                if ((srv.closing_all && srv.nconns == 0) || util_now_ms() > deadline)
                    break;
            }
        }
        if (deadline)
            ev_timer_stop(loop, &stop_tick);
    }
    log_info("stopping with %zu connections open", srv.nconns);
    rc = 0;
out:
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    pthread_mutex_lock(&wake_lock);
    loop_gone = true;
    pthread_mutex_unlock(&wake_lock);
    sse_stop();
    if (srv.ctx) {
        lws_context_destroy(srv.ctx);
        srv.ctx = NULL;
    }
    if (loop)
        ev_loop_destroy(loop);
    writer_stop(srv.writer);
    feed_stop(srv.feed);
    store_close(srv.store);
    log_info("stopped");
    return rc;
}
