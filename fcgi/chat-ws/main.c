/*
 * chat_ws.c - main of the WebSocket companion: flags, the libwebsockets
 * event loop, and the life of a connection (SPEC section 4).
 *
 * Design:
 *   - one event loop (libwebsockets) owns every connection; nothing in it
 *     waits for SQLite's write lock: sends go to the writer thread
 *     (writer.c), new rows come from the feed thread (feed.c), each read
 *     once and rendered once, and both wake the loop with lws_cancel_service();
 *   - a connection first replays the room's stored messages after its
 *     cursor (or the last `tail`) from the database in chunks, then goes live;
 *     its cursor (the last id queued) drops anything already replayed, so
 *     there is no gap and no duplicate between the two;
 *   - each connection's queue is bounded: a subscriber that falls behind
 *     is closed with 1008 and resumes by id when it returns;
 *   - a handshake is checked before it is accepted (Origin, room, index,
 *     tail, room for one more socket) and refused with a real HTTP answer,
 *     JSON as chat-fcgi's (400, 403, 503): a connection dropped without one
 *     would reach the client as nginx's "retry shortly". A plain GET /ws
 *     runs the same checks and answers 426 when they pass;
 *   - behind authentication nginx sets X-Chat-User (never the client's), and
 *     that name is the user of every message the socket sends.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <libwebsockets.h>

#include "cli.h"
#include "feed.h"
#include "chat_limits.h"
#include "log.h"
#include "params.h"
#include "render.h"
#include "store.h"
#include "util.h"
#include "valid.h"
#include "writer.h"

#define VERSION "1.0.0"
#define REPLAY_CHUNK 100         /* stored messages read per replay step */
#define MSG_MAX 65536            /* a client message over this closes with 1009 */
#define WRITES_PER_CALLBACK 16   /* frames written per writable callback */
#define CLOSE_TRY_AGAIN_LATER 1013  /* RFC 6455 registry: try again later */
#define FD_RESERVE 64            /* descriptors kept for the database, logs and nginx's new sockets */
#define AUTH_HEADER "x-chat-user:"  /* set by nginx: the name it authenticated (lws lower-cases names) */

_Static_assert(LWS_PRE <= FEED_HEADROOM, "feed frames need LWS_PRE bytes of headroom");

struct config {
    const char *db_path;
    const char *listen;
    const char *origins;         /* comma-separated allow-list, or NULL */
    int probe_ms, busy_ms, ping_secs, handshake_secs;
    int sends_per_sec;           /* per connection; bursts of twice as many */
    unsigned max_queue;
    int max_conns;               /* WebSockets open at once; 0: by the descriptor limit */
    bool sync_full;
};

/* One WebSocket client. Lives in libwebsockets' per-session storage. */
struct conn {
    struct conn *prev, *next;    /* every open connection */
    struct lws *wsi;
    uint64_t id;
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
    int64_t cursor;              /* last message id queued (or replayed past) */
    int tail;                    /* replay the last `tail` instead of after cursor */
    bool replaying;              /* still reading stored messages */
    bool established;
    int close_code;              /* close with this once the queue allows */
    const char *close_reason;
    struct feed_msg **q;         /* ring of frames to send */
    unsigned qcap, qhead, qlen;
    char *rx;                    /* the client message being reassembled */
    size_t rx_len;
    double tokens;               /* sends allowed now (token bucket) */
    int64_t tokens_at;           /* util_now_ms() of the last refill */
    size_t auth_len;             /* 0: not authenticated; over CHAT_USER_MAX: too long */
    char auth[CHAT_USER_MAX + 1];   /* the name nginx authenticated (X-Chat-User) */
};

static struct {
    struct config cfg;
    struct lws_context *ctx;
    struct store *store;         /* the loop's reads (replays) */
    struct feed *feed;
    struct writer *writer;
    struct conn *conns;
    size_t nconns;
    uint64_t next_id;
    volatile sig_atomic_t stop_signal;
    bool closing_all;
    /* counters for /metrics (event loop only) */
    unsigned long long opened, frames_sent, received, refused, closed_slow;
} ws;

/* ---- the outbound queue ---- */

/* Queues a frame (taking a reference); false when the queue is full. */
static bool queue_push(struct conn *c, struct feed_msg *m)
{
    if (c->qlen == ws.cfg.max_queue)
        return false;
    if (c->qlen == c->qcap) {
        unsigned ncap = c->qcap ? c->qcap * 2 : 8;
        struct feed_msg **nq;
        if (ncap > ws.cfg.max_queue)
            ncap = ws.cfg.max_queue;
        if (!(nq = malloc(ncap * sizeof *nq)))
            return false;
        for (unsigned i = 0; i < c->qlen; i++)
            nq[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    m->refs++;
    c->q[(c->qhead + c->qlen++) % c->qcap] = m;
    return true;
}

static void queue_clear(struct conn *c)
{
    while (c->qlen) {
        feed_msg_unref(c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    free(c->q);
    c->q = NULL;
    c->qcap = c->qhead = 0;
}

/* Asks for the connection to be closed with code once it can write. */
static void conn_close_later(struct conn *c, int code, const char *reason)
{
    if (!c->close_code) {
        c->close_code = code;
        c->close_reason = reason;
    }
    lws_callback_on_writable(c->wsi);
}

/* Queues a rendered reply for this connection alone (an error, a duplicate). */
static void conn_reply(struct conn *c, char *json, size_t len)
{
    struct feed_msg *m = json ? feed_msg_new(json, len) : NULL;

    free(json);
    if (!m) {
        conn_close_later(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    if (!queue_push(c, m))
        conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
    else
        lws_callback_on_writable(c->wsi);
    feed_msg_unref(m);
}

static void conn_error(struct conn *c, const struct chat_fail *f)
{
    size_t len;
    char *json = render_ws_error(f->msg, chat_err_status(f->code), &len);
    conn_reply(c, json, len);
}

/* ---- replay and live delivery ---- */

/*
 * Queues the next chunk of stored messages; when the room has no more, goes
 * live with the cursor at the snapshot's last id, so that the feed's rows up
 * to it (all in the replay) are dropped and every later one is delivered.
 */
static void replay_step(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;

    if (c->tail > 0) {
        /* The last `tail` messages: replay from just before the first of them. */
        if (store_fetch(ws.store, c->room, c->room_len, 0, 1, c->tail, &page, &f) < 0)
            goto fail;
        c->cursor = page.n ? page.msgs[0].id - 1 : 0;
        c->tail = 0;
        store_page_free(&page);
    }
    if (store_fetch(ws.store, c->room, c->room_len, c->cursor, REPLAY_CHUNK, 0, &page, &f) < 0)
        goto fail;
    for (size_t i = 0; i < page.n; i++) {
        size_t len;
        char *json = render_message(&page.msgs[i], &len);
        struct feed_msg *m = json ? feed_msg_new(json, len) : NULL;
        free(json);
        if (!m || !queue_push(c, m)) {
            feed_msg_unref(m);
            store_page_free(&page);
            conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
            return;
        }
        feed_msg_unref(m);
        c->cursor = page.msgs[i].id;
    }
    if (!page.more) {
        /*
         * Live from the snapshot's last id: every row up to it was replayed
         * or belongs to another room. (A cursor ahead of the database, which
         * was replaced, resyncs here too.)
         */
        c->replaying = false;
        c->cursor = page.seen_id;
    }
    store_page_free(&page);
    if (c->qlen)
        lws_callback_on_writable(c->wsi);
    return;
fail:
    log_warn("replay of room %s failed: %s", c->room, f.msg);
    conn_close_later(c, CLOSE_TRY_AGAIN_LATER, "database unavailable: retry");
}

/* Hands the feed's new rows to the live subscribers of their rooms. */
static void deliver_feed(void)
{
    struct feed_msg **msgs;
    size_t n;

    feed_take(ws.feed, &msgs, &n);
    for (struct conn *c = ws.conns; c && n; c = c->next) {
        bool queued = false;
        if (c->replaying || c->close_code || !c->established)
            continue;
        for (size_t i = 0; i < n; i++) {
            struct feed_msg *m = msgs[i];
            if (m->id <= c->cursor || m->room_len != c->room_len ||
                memcmp(m->room, c->room, c->room_len) != 0)
                continue;
            if (!queue_push(c, m)) {
                log_info("connection %llu in room %s too slow: closed with 1008",
                         (unsigned long long)c->id, c->room);
                ws.closed_slow++;
                queue_clear(c);
                conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
                queued = false;
                break;
            }
            c->cursor = m->id;
            queued = true;
        }
        if (queued)
            lws_callback_on_writable(c->wsi);
    }
    for (size_t i = 0; i < n; i++)
        feed_msg_unref(msgs[i]);
    free(msgs);
}

/* Tells senders what the writer found: a repeated cid, or a refusal. */
static void deliver_results(void)
{
    struct writer_result *res;
    size_t n;

    writer_take(ws.writer, &res, &n);
    for (size_t i = 0; i < n; i++) {
        for (struct conn *c = ws.conns; c; c = c->next) {
            size_t len;
            char *json;
            if (c->id != res[i].conn)
                continue;
            if (res[i].fail.code) {
                conn_error(c, &res[i].fail);
            } else {
                json = render_ws_duplicate(res[i].id, &len);
                conn_reply(c, json, len);
            }
            break;
        }
    }
    free(res);
}

/* ---- one client message ---- */

/* The per-connection send rate: true when this message may go through. */
static bool take_token(struct conn *c)
{
    int64_t now = util_now_ms();
    double burst = 2.0 * ws.cfg.sends_per_sec;

    if (c->tokens_at == 0)
        c->tokens = burst;
    else
        c->tokens += (double)(now - c->tokens_at) * ws.cfg.sends_per_sec / 1000.0;
    if (c->tokens > burst)
        c->tokens = burst;
    c->tokens_at = now;
    if (c->tokens < 1.0)
        return false;
    c->tokens -= 1.0;
    return true;
}

static void handle_message(struct conn *c, const char *data, size_t len)
{
    struct params p;
    struct valid_send m;
    struct chat_fail f = { 0 };

    ws.received++;
    if (!take_token(c)) {
        chat_fail(&f, CHAT_ETOOMANY, "too many messages: at most %d a second", ws.cfg.sends_per_sec);
        conn_error(c, &f);
        return;
    }
    params_init(&p);
    if (params_ws_frame(&p, data, len, c->room, c->room_len, &m, &f) == 0 &&
        params_auth_user(&m, c->auth, c->auth_len, &f) == 0)
        writer_submit(ws.writer, c->id, &m, &f);
    params_free(&p);
    if (f.code != CHAT_OK)
        conn_error(c, &f);
}

/* ---- connection set-up ---- */

static bool origin_allowed(struct lws *wsi)
{
    char origin[256];
    const char *list = ws.cfg.origins;
    size_t n;

    if (!list)
        return true;
    if (lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN) <= 0)
        return false;
    n = strlen(origin);
    while (*list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len == n && memcmp(list, origin, n) == 0)
            return true;
        list += len + (end ? 1 : 0);
    }
    return false;
}

/*
 * Reads room, index and tail from the URL query into *c. Returns 0, or
 * CHAT_EBADREQ with the reason in *f when one is invalid, given twice, or an
 * argument is too long to read.
 */
static int read_args(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    static const char *const names[3] = { "room", "index", "tail" };
    char arg[256];
    bool seen[3] = { false, false, false };
    int64_t num;

    c->room_len = strlen(CHAT_DEFAULT_ROOM);
    memcpy(c->room, CHAT_DEFAULT_ROOM, c->room_len + 1);
    c->cursor = -1;              /* live only, unless index or tail */
    for (int i = 0; i < 64; i++) {
        int len = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        const char *v;
        int which;

        if ((size_t)len >= sizeof arg)
            return chat_fail(f, CHAT_EBADREQ, "a URL argument is longer than %zu bytes", sizeof arg - 1);
        /* An empty argument ("a=1&&b=2") has length 0 too: only a failed copy ends the list. */
        if (lws_hdr_copy_fragment(wsi, arg, sizeof arg, WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            break;
        if (!(v = strchr(arg, '=')))
            continue;
        v++;
        which = !strncmp(arg, "room=", 5) ? 0 : !strncmp(arg, "index=", 6) ? 1 : !strncmp(arg, "tail=", 5) ? 2 : -1;
        if (which < 0)
            continue;
        if (seen[which])
            return chat_fail(f, CHAT_EBADREQ, "parameter %s is given more than once", names[which]);
        seen[which] = true;
        if (which == 0) {
            if (!valid_name(v, strlen(v)))
                return chat_fail(f, CHAT_EBADREQ, "room must match [A-Za-z0-9_.-]{1,%d}", CHAT_NAME_MAX);
            c->room_len = strlen(v);
            memcpy(c->room, v, c->room_len + 1);
        } else if (which == 1) {
            if (!util_parse_int(v, strlen(v), 0, INT64_MAX / 2, &num))
                return chat_fail(f, CHAT_EBADREQ, "index must be a whole number from 0 to %lld",
                                 (long long)(INT64_MAX / 2));
            if (!seen[2])
                c->cursor = num;
        } else {
            if (!util_parse_int(v, strlen(v), 1, CHAT_TAIL_MAX, &num))
                return chat_fail(f, CHAT_EBADREQ, "tail must be a whole number from 1 to %d", CHAT_TAIL_MAX);
            c->tail = (int)num;
            c->cursor = 0;
        }
    }
    return 0;
}

/* Reads the name nginx authenticated, if any, into c->auth. */
static void read_auth(struct lws *wsi, struct conn *c)
{
    int n = lws_hdr_custom_length(wsi, AUTH_HEADER, (int)strlen(AUTH_HEADER));

    c->auth_len = 0;
    c->auth[0] = '\0';
    if (n <= 0)
        return;
    if (n > CHAT_USER_MAX) {
        c->auth_len = (size_t)n;          /* refused by params_auth_user on each send */
        return;
    }
    if (lws_hdr_custom_copy(wsi, c->auth, sizeof c->auth, AUTH_HEADER, (int)strlen(AUTH_HEADER)) == n)
        c->auth_len = (size_t)n;
}

/*
 * The checks of a handshake, and of a plain GET /ws: fills *c from the URL
 * and returns 0, or the refusal in *f: CHAT_EUNAVAIL (stopping, or as many
 * sockets open as --max-conns), CHAT_EFORBIDDEN (an Origin outside the
 * allow-list), CHAT_EBADREQ (room, index or tail).
 */
static int handshake_check(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    memset(c, 0, sizeof *c);
    if (ws.closing_all || ws.stop_signal)
        return chat_fail(f, CHAT_EUNAVAIL, "the WebSocket server is stopping: retry shortly");
    if (!origin_allowed(wsi))
        return chat_fail(f, CHAT_EFORBIDDEN, "this page's Origin is not allowed to open a WebSocket here");
    if (read_args(wsi, c, f) < 0)
        return f->code;
    if (ws.nconns >= (size_t)ws.cfg.max_conns)
        return chat_fail(f, CHAT_EUNAVAIL, "the WebSocket server is full (%d sockets): retry shortly",
                         ws.cfg.max_conns);
    return 0;
}

static const char *status_line(int status)
{
    switch (status) {
    case 400: return "HTTP/1.1 400 Bad Request";
    case 403: return "HTTP/1.1 403 Forbidden";
    case 426: return "HTTP/1.1 426 Upgrade Required";
    case 503: return "HTTP/1.1 503 Service Unavailable";
    default:  return "HTTP/1.1 500 Internal Server Error";
    }
}

/*
 * Answers status with {"error": msg}, the headers of every API answer
 * (SPEC section 5), Retry-After on a 503 and Upgrade on a 426. Returns 0,
 * or -1 when it could not be written (the connection is then dropped).
 */
static int answer_json(struct lws *wsi, int status, const char *msg)
{
    unsigned char head[LWS_PRE + 512], body[LWS_PRE + 1024];
    unsigned char *start = head + LWS_PRE, *p = start, *end = head + sizeof head;
    const char *line = status_line(status);
    size_t len;
    char *json = render_error(msg, &len);
    int rc = -1;

#define ADD(name, value) lws_add_http_header_by_name(wsi, (const unsigned char *)(name), \
                             (const unsigned char *)(value), (int)strlen(value), &p, end)
    if (!json || len > sizeof body - LWS_PRE)
        goto out;
    memcpy(body + LWS_PRE, json, len);
    if (lws_add_http_header_by_name(wsi, NULL, (const unsigned char *)line, (int)strlen(line), &p, end) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"application/json", 16, &p, end) ||
        lws_add_http_header_content_length(wsi, len, &p, end) ||
        ADD("cache-control:", "no-store") || ADD("x-content-type-options:", "nosniff") ||
        (status == 503 && ADD("retry-after:", "1")) ||
        (status == 426 && ADD("upgrade:", "websocket")) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        goto out;
#undef ADD
    if (lws_write(wsi, body + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        goto out;
    rc = 0;
out:
    free(json);
    return rc;
}

/* Counts and logs a refused handshake (or plain GET), and answers it. */
static int refuse(struct lws *wsi, const struct chat_fail *f)
{
    ws.refused++;
    log_info("refused a WebSocket (%d): %s", chat_err_status(f->code), f->msg);
    return answer_json(wsi, chat_err_status(f->code), f->msg);
}

static void conn_open(struct lws *wsi, struct conn *c)
{
    c->wsi = wsi;
    c->id = ++ws.next_id;
    c->next = ws.conns;
    if (ws.conns)
        ws.conns->prev = c;
    ws.conns = c;
    ws.nconns++;
    ws.opened++;
    c->established = true;
    feed_set_listening(ws.feed, true);
    if (c->cursor < 0) {
        /* Live only: start after the newest stored message. */
        struct store_page page;
        struct chat_fail f;
        c->cursor = 0;
        if (store_fetch(ws.store, c->room, c->room_len, INT64_MAX / 2, 1, 0, &page, &f) == 0) {
            c->cursor = page.seen_id;
            store_page_free(&page);
        } else {
            conn_close_later(c, CLOSE_TRY_AGAIN_LATER, "database unavailable: retry");
        }
        return;
    }
    c->replaying = true;
    replay_step(c);
}

static void conn_gone(struct conn *c)
{
    if (!c->established)
        return;
    c->established = false;
    if (c->prev)
        c->prev->next = c->next;
    else
        ws.conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ws.nconns--;
    queue_clear(c);
    free(c->rx);
    c->rx = NULL;
    if (ws.nconns == 0)
        feed_set_listening(ws.feed, false);
}

/* ---- plain HTTP: /metrics and /ws without Upgrade ---- */

/*
 * Answers GET /metrics in Prometheus text format; /ws without Upgrade with
 * the handshake's refusal, or 426 when the handshake would be accepted;
 * anything else 404.
 */
static int serve_http(struct lws *wsi, const char *path)
{
    unsigned char buf[LWS_PRE + 1536], head[LWS_PRE + 512];
    unsigned char *start = head + LWS_PRE, *p = start, *end = head + sizeof head;
    char *body = (char *)buf + LWS_PRE;
    size_t room = sizeof buf - LWS_PRE;
    int n;

    if (path && strcmp(path, "/ws") == 0) {
        struct conn probe;
        struct chat_fail f = { 0 };
        if (handshake_check(wsi, &probe, &f) < 0)
            n = refuse(wsi, &f);
        else
            n = answer_json(wsi, 426, "this URL takes a WebSocket: send Upgrade: websocket");
        return n < 0 || lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (!path || strcmp(path, "/metrics") != 0) {
        lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
        return -1;
    }
    n = snprintf(body, room,
        "# HELP chat_ws_open_sockets WebSocket connections open now.\n"
        "# TYPE chat_ws_open_sockets gauge\n"
        "chat_ws_open_sockets %zu\n"
        "# HELP chat_ws_connections_total WebSocket connections accepted.\n"
        "# TYPE chat_ws_connections_total counter\n"
        "chat_ws_connections_total %llu\n"
        "# HELP chat_ws_refused_total Handshakes refused (origin, room, index or tail).\n"
        "# TYPE chat_ws_refused_total counter\n"
        "chat_ws_refused_total %llu\n"
        "# HELP chat_ws_frames_sent_total Frames written to clients.\n"
        "# TYPE chat_ws_frames_sent_total counter\n"
        "chat_ws_frames_sent_total %llu\n"
        "# HELP chat_ws_messages_received_total Messages received from clients.\n"
        "# TYPE chat_ws_messages_received_total counter\n"
        "chat_ws_messages_received_total %llu\n"
        "# HELP chat_ws_closed_slow_total Connections closed with 1008 as too slow.\n"
        "# TYPE chat_ws_closed_slow_total counter\n"
        "chat_ws_closed_slow_total %llu\n",
        ws.nconns, ws.opened, ws.refused, ws.frames_sent, ws.received, ws.closed_slow);
    if (n < 0 || (size_t)n >= room)
        return -1;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4", (lws_filepos_t)n,
                                    &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    if (lws_write(wsi, (unsigned char *)body, (size_t)n, LWS_WRITE_HTTP_FINAL) != n)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- the protocol callback ---- */

static int write_some(struct conn *c)
{
    for (int i = 0; i < WRITES_PER_CALLBACK && c->qlen && !lws_send_pipe_choked(c->wsi); i++) {
        struct feed_msg *m = c->q[c->qhead];
        if (lws_write(c->wsi, m->buf + FEED_HEADROOM, m->len, LWS_WRITE_TEXT) < (int)m->len)
            return -1;
        ws.frames_sent++;
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
        feed_msg_unref(m);
    }
    if (c->qlen == 0 && c->replaying && !c->close_code)
        replay_step(c);
    if (c->close_code && (c->qlen == 0 || c->close_code != LWS_CLOSE_STATUS_GOINGAWAY)) {
        lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
                         (unsigned char *)c->close_reason, strlen(c->close_reason));
        return -1;
    }
    if (c->qlen)
        lws_callback_on_writable(c->wsi);
    return 0;
}

static int receive(struct conn *c, const char *in, size_t len)
{
    bool final = lws_is_final_fragment(c->wsi) && lws_remaining_packet_payload(c->wsi) == 0;

    if (lws_frame_is_binary(c->wsi)) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         (unsigned char *)"binary messages are not accepted", 32);
        return -1;
    }
    if (c->rx_len + len > MSG_MAX) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message over 64 KiB", 19);
        return -1;
    }
    if (final && !c->rx) {
        handle_message(c, in, len);       /* the common case: one fragment */
        return 0;
    }
    if (len) {
        char *nb = realloc(c->rx, c->rx_len + len);
        if (!nb)
            return -1;
        c->rx = nb;
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
    }
    if (final) {
        handle_message(c, c->rx ? c->rx : "", c->rx_len);
        free(c->rx);
        c->rx = NULL;
        c->rx_len = 0;
    }
    return 0;
}

static int callback_chat(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    struct conn *c = user;

    switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
        /* Refused here, with an answer (>0: lws completes the transaction). */
        struct conn probe;
        struct chat_fail f = { 0 };
        if (!in || strcmp(in, "websocket") != 0 || handshake_check(wsi, &probe, &f) == 0)
            return 0;
        return refuse(wsi, &f) < 0 ? -1 : 1;
    }
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        /* Checked already; this fills the session (a refusal now only hangs up). */
        struct chat_fail f = { 0 };
        if (handshake_check(wsi, c, &f) < 0) {
            ws.refused++;
            return 1;
        }
        read_auth(wsi, c);
        return 0;
    }
    case LWS_CALLBACK_HTTP:
        return serve_http(wsi, in);
    case LWS_CALLBACK_ESTABLISHED:
        conn_open(wsi, c);
        return 0;
    case LWS_CALLBACK_RECEIVE:
        return c->close_code ? 0 : receive(c, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return write_some(c);
    case LWS_CALLBACK_CLOSED:
        conn_gone(c);
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (!ws.ctx)
            return 0;
        deliver_results();
        deliver_feed();
        if (ws.stop_signal && !ws.closing_all) {
            ws.closing_all = true;
            for (struct conn *k = ws.conns; k; k = k->next)
                conn_close_later(k, LWS_CLOSE_STATUS_GOINGAWAY, "server shutting down");
        }
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    { "chat", callback_chat, sizeof(struct conn), 1024, 0, NULL, 0 },
    { NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ---- start-up ---- */

static void usage(FILE *out)
{
    fprintf(out,
        "Usage: chat-ws [OPTION]...\n"
        "WebSocket companion of the chat: ws://HOST/ws?room=R&index=N (or &tail=T).\n"
        "\n"
        "  -d, --db PATH          SQLite database shared with chat-fcgi (default: chat.db)\n"
        "  -l, --listen ADDR      HOST:PORT or :PORT (loopback) to listen on\n"
        "                         (default: 127.0.0.1:8081)\n"
        "      --origin LIST      comma-separated Origin allow-list (default: any)\n"
        "      --max-conns N      WebSockets open at once; beyond, a handshake gets 503\n"
        "                         (default: the descriptor limit less %d)\n"
        "      --max-queue N      frames queued for one client before it is closed\n"
        "                         with 1008 as too slow (default: 1024)\n"
        "      --ping-secs N      ping a connection idle this long; drop it when no pong\n"
        "                         comes within as long again, at most 10 s (default: 30)\n"
        "      --handshake-secs N drop a connection whose handshake takes longer (default: 10)\n"
        "      --max-sends N      messages one connection may send a second, in bursts\n"
        "                         of twice as many; beyond, an error frame 429 (default: 20)\n"
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
        "SIGTERM or SIGINT closes every connection with 1001 and stops it.\n", FD_RESERVE);
}

static void parse_flags(int argc, char **argv, struct config *c)
{
    enum { OPT_ORIGIN = 256, OPT_CONNS, OPT_QUEUE, OPT_PING, OPT_HANDSHAKE, OPT_PROBE, OPT_BUSY, OPT_SYNC, OPT_SENDS };
    static const struct option opts[] = {
        { "db", required_argument, NULL, 'd' },
        { "listen", required_argument, NULL, 'l' },
        { "origin", required_argument, NULL, OPT_ORIGIN },
        { "max-conns", required_argument, NULL, OPT_CONNS },
        { "max-queue", required_argument, NULL, OPT_QUEUE },
        { "ping-secs", required_argument, NULL, OPT_PING },
        { "handshake-secs", required_argument, NULL, OPT_HANDSHAKE },
        { "max-sends", required_argument, NULL, OPT_SENDS },
        { "probe-ms", required_argument, NULL, OPT_PROBE },
        { "busy-ms", required_argument, NULL, OPT_BUSY },
        { "sync", required_argument, NULL, OPT_SYNC },
        { "verbose", no_argument, NULL, 'v' },
        { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };
    int ch;

    while ((ch = getopt_long(argc, argv, "d:l:vqhV", opts, NULL)) != -1) {
        switch (ch) {
        case 'd': c->db_path = optarg; break;
        case 'l': c->listen = optarg; break;
        case OPT_ORIGIN: c->origins = optarg; break;
        case OPT_CONNS: c->max_conns = cli_int("--max-conns", optarg, 1, 1000000); break;
        case OPT_QUEUE: c->max_queue = (unsigned)cli_int("--max-queue", optarg, REPLAY_CHUNK, 1000000); break;
        case OPT_PING: c->ping_secs = cli_int("--ping-secs", optarg, 1, 3600); break;
        case OPT_HANDSHAKE: c->handshake_secs = cli_int("--handshake-secs", optarg, 1, 600); break;
        case OPT_PROBE: c->probe_ms = cli_int("--probe-ms", optarg, 1, 10000); break;
        case OPT_SENDS: c->sends_per_sec = cli_int("--max-sends", optarg, 1, 100000); break;
        case OPT_BUSY: c->busy_ms = cli_int("--busy-ms", optarg, 0, 600000); break;
        case OPT_SYNC: c->sync_full = cli_sync_full(optarg); break;
        case 'v': log_set_level(LOG_DEBUG); break;
        case 'q': log_set_level(LOG_WARN); break;
        case 'h': usage(stdout); exit(0);
        case 'V': printf("chat-ws %s\n", VERSION); exit(0);
        default: usage(stderr); exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "chat-ws: unexpected argument %s\n", argv[optind]);
        usage(stderr);
        exit(2);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    ws.stop_signal = 1;
    if (ws.ctx)
        lws_cancel_service(ws.ctx);
}

/* While stopping, wakes the loop every 50 ms so the deadline is kept. */
static lws_sorted_usec_list_t stop_tick;
static void on_stop_tick(lws_sorted_usec_list_t *sul)
{
    lws_sul_schedule(ws.ctx, 0, sul, on_stop_tick, 50 * LWS_US_PER_MS);
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

int main(int argc, char **argv)
{
    struct config *c = &ws.cfg;
    struct lws_context_creation_info info;
    struct store_opts so;
    struct chat_fail f;
    static lws_retry_bo_t retry;
    char host[64] = "127.0.0.1";
    const char *colon;
    int64_t port;
    int rc = 1;

    *c = (struct config){ .db_path = "chat.db", .listen = "127.0.0.1:8081", .probe_ms = 5,
                          .busy_ms = 2000, .ping_secs = 30, .handshake_secs = 10, .max_queue = 1024,
                          .sends_per_sec = 20 };
    log_set_name("chat-ws");
    cli_set_name("chat-ws");
    parse_flags(argc, argv, c);
    colon = strrchr(c->listen, ':');
    if (!colon || !util_parse_int(colon + 1, strlen(colon + 1), 1, 65535, &port) ||
        (size_t)(colon - c->listen) >= sizeof host) {
        fprintf(stderr, "chat-ws: --listen must be HOST:PORT or :PORT\n");
        return 2;
    }
    if (colon > c->listen) {
        memcpy(host, c->listen, (size_t)(colon - c->listen));
        host[colon - c->listen] = '\0';
    }
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
    }
    signal(SIGPIPE, SIG_IGN);
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_line);

    so = (struct store_opts){ .path = c->db_path, .busy_ms = c->busy_ms, .sync_full = c->sync_full };
    if (store_open(&so, &ws.store, &f) < 0) {
        log_error("%s", f.msg);
        return 1;
    }

    retry.secs_since_valid_ping = (uint16_t)c->ping_secs;
    retry.secs_since_valid_hangup = (uint16_t)(c->ping_secs + (c->ping_secs < 10 ? c->ping_secs : 10));
    memset(&info, 0, sizeof info);
    info.port = (int)port;
    info.iface = host;
    info.protocols = protocols;
    /* A handshake that does not complete: headers held too long, or none sent. */
    info.timeout_secs = (unsigned)c->handshake_secs;
    info.timeout_secs_ah_idle = (unsigned)c->handshake_secs;
    info.keepalive_timeout = c->handshake_secs;
    info.retry_and_idle_policy = &retry;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.pt_serv_buf_size = 4096;
    if (!(ws.ctx = lws_create_context(&info))) {
        log_error("cannot listen on %s", c->listen);
        goto out;
    }
    {
        struct feed_opts fo = { .store = so, .probe_ms = c->probe_ms, .wake = wake_loop, .wake_ctx = ws.ctx };
        struct writer_opts wo;
        if (feed_start(&fo, &ws.feed, &f) < 0) {
            log_error("%s", f.msg);
            goto out;
        }
        wo = (struct writer_opts){ .store = so, .feed = ws.feed,
                                   .wake = wake_loop, .wake_ctx = ws.ctx };
        if (writer_start(&wo, &ws.writer, &f) < 0) {
            log_error("%s", f.msg);
            goto out;
        }
    }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    log_info("listening on %s, database %s", c->listen, c->db_path);

    {
        int64_t deadline = 0;
        for (;;) {
            if (lws_service(ws.ctx, 0) < 0)
                break;
            if (ws.stop_signal) {
                if (!deadline) {
                    deadline = util_now_ms() + 1000;
                    lws_sul_schedule(ws.ctx, 0, &stop_tick, on_stop_tick, 50 * LWS_US_PER_MS);
                    lws_cancel_service(ws.ctx);
                }
                if ((ws.closing_all && ws.nconns == 0) || util_now_ms() > deadline)
                    break;
            }
        }
    }
    log_info("stopping with %zu connections open", ws.nconns);
    rc = 0;
out:
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    pthread_mutex_lock(&wake_lock);
    loop_gone = true;
    pthread_mutex_unlock(&wake_lock);
    if (ws.ctx) {
        lws_context_destroy(ws.ctx);
        ws.ctx = NULL;
    }
    writer_stop(ws.writer);
    feed_stop(ws.feed);
    store_close(ws.store);
    log_info("stopped");
    return rc;
}
