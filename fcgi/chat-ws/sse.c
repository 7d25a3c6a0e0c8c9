/*
 * sse.c - the server-sent events transport (see sse.h).
 *
 * A stream answers 200 text/event-stream without a length (libwebsockets
 * then says Connection: close, so the end of the stream is the end of the
 * connection), then drops the request's header storage and the HTTP
 * timeouts that would cut a long stream (as lws_http_mark_sse() does).
 * What goes out:
 *
 *   retry: 2000                       first, with the ready event
 *   event: ready
 *   id: 41                            the cursor the replay starts after
 *   data: {"room":"lobby","max_index":41}
 *
 *   id: 42                            one event per message
 *   data: {"id":42,"room":"lobby",...}
 *
 *   : ping                            after --sse-ping-secs without a write
 *
 * A message's event is made once, the first time a stream sends it, and
 * kept with the shared frame (feed_msg.sse): 5,000 streams of a room write
 * the same bytes. JSON never holds a raw newline, so data is one line.
 * What a single writable callback has queued goes out in one write.
 *
 * Refusals: EventSource gives up for good on any answer but a 200 event
 * stream, so only what retrying cannot cure is an error status (400 and
 * 403 JSON, 405); a full server, or one that is stopping, answers a 200
 * stream holding a retry: line and one `event: error`, then ends it, and
 * the client comes back by itself with its Last-Event-ID.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "handshake.h"
#include "log.h"
#include "render.h"
#include "replay.h"
#include "rooms.h"
#include "server.h"
#include "sse.h"
#include "util.h"

#define GATHER_MAX (16 * 1024)   /* bytes of events put together in one write */
#define WRITES_PER_CALLBACK 8    /* writes per writable callback, then others' turn */
#define PING_TICK_MS 250         /* how often idle streams are looked for */

_Static_assert(LWS_PRE <= FEED_HEADROOM, "event frames need LWS_PRE bytes of headroom");

static struct feed_msg *ping;    /* ": ping\n\n", queued to every idle stream */
static lws_sorted_usec_list_t ping_timer;
static unsigned char gather[LWS_PRE + GATHER_MAX];

/* The bytes of frame m as they go out; false when out of memory. */
static bool event_bytes(struct feed_msg *m, const unsigned char **p, size_t *len)
{
    if (m->id == 0) {
        /* A stream's own frame (ready, ping, error): event-stream text already. */
        *p = m->buf + FEED_HEADROOM;
        *len = m->len;
        return true;
    }
    if (!m->sse) {
        /* "id: N\ndata: " JSON "\n\n": 20 digits at most for N. */
        unsigned char *b = malloc(FEED_HEADROOM + 32 + m->len);
        char *q;
        if (!b)
            return false;
        q = (char *)b + FEED_HEADROOM;
        q = util_put_str(q, "id: ");
        q = util_put_int(q, m->id);
        q = util_put_str(q, "\ndata: ");
        q = util_put(q, (const char *)m->buf + FEED_HEADROOM, m->len);
        q = util_put_str(q, "\n\n");
        m->sse = b;
        m->sse_len = (size_t)(q - ((char *)b + FEED_HEADROOM));
    }
    *p = m->sse + FEED_HEADROOM;
    *len = m->sse_len;
    return true;
}

/* Writes p[0..len), which has LWS_PRE bytes of room in front. */
static int write_out(struct conn *c, const unsigned char *p, size_t len)
{
    return lws_write(c->wsi, (unsigned char *)p, len, LWS_WRITE_HTTP) < (int)len ? -1 : 0;
}

/* Queues a stream's own frame of event-stream text (not a message). */
static void push_text(struct conn *c, const char *text, size_t len)
{
    struct feed_msg *m = feed_msg_new(text, len);

    if (!m || !conn_push(c, m)) {
        feed_msg_unref(m);
        conn_close_later(c, CLOSE_TRY_AGAIN_LATER, "out of memory");
        return;
    }
    feed_msg_unref(m);
    conn_want_write(c);
}

/*
 * A retry: line, then "event: error" with {"error": why, "code": code}.
 * The retry period is spread over a second one, so that a crowd turned
 * away together does not come back together.
 */
static char *error_event(const char *why, int code, size_t *len)
{
    size_t jlen;
    char *json = render_ws_error(why, code, &jlen), *out, *p;

    if (!json)
        return NULL;
    if ((out = malloc(jlen + 64))) {
        p = util_put_str(out, "retry: ");
        p = util_put_int(p, SSE_RETRY_MS + rand() % SSE_RETRY_MS);
        p = util_put_str(p, "\nevent: error\ndata: ");
        p = util_put(p, json, jlen);
        p = util_put_str(p, "\n\n");
        *len = (size_t)(p - out);
    }
    free(json);
    return out;
}

void sse_ready(struct conn *c, int64_t from, int64_t max_index, bool pruned)
{
    size_t jlen;
    char *json = render_sse_ready(c->room, c->room_len, max_index, pruned, &jlen), *text, *p;

    if (!json || !(text = malloc(jlen + 96))) {
        free(json);
        conn_close_later(c, CLOSE_TRY_AGAIN_LATER, "out of memory");
        return;
    }
    p = util_put_str(text, "retry: ");
    p = util_put_int(p, SSE_RETRY_MS);
    p = util_put_str(p, "\nevent: ready\nid: ");
    p = util_put_int(p, from);
    p = util_put_str(p, "\ndata: ");
    p = util_put(p, json, jlen);
    p = util_put_str(p, "\n\n");
    push_text(c, text, (size_t)(p - text));
    free(text);
    free(json);
}

void sse_end_now(struct conn *c)
{
    rooms_remove(c);
    conn_queue_clear(c);
    c->replaying = false;
    if (!c->close_code) {
        c->close_code = LWS_CLOSE_STATUS_POLICY_VIOLATION;
        c->close_reason = "ended";
    }
    /* Not at its next writable callback: a reader that stopped reading has none. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}


/*
 * libwebsockets reads nothing of an HTTP/1 connection while it answers
 * (LRS_DOING_TRANSACTION), so with POLLIN on, a client that closed would
 * wake the loop again and again; and with it off (flow control), no
 * writable callback comes. So a stream reads only while it has something
 * to write, and the ping timer looks for clients that left.
 */
static void rx_off(struct conn *c)
{
    if (!c->rx_off) {
        lws_rx_flow_control(c->wsi, LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
        c->rx_off = true;
    }
}

void sse_want_write(struct conn *c)
{
    if (c->rx_off) {
        lws_rx_flow_control(c->wsi, 1 | LWS_RXFLOW_REASON_FLAG_PROCESS_NOW);
        c->rx_off = false;
    }
    lws_callback_on_writable(c->wsi);
}

int sse_write_head(struct conn *c)
{
    struct feed_msg *m = c->q[c->qhead];
    const unsigned char *p;
    size_t len;

    if (!event_bytes(m, &p, &len) || write_out(c, p, len) < 0)
        return -1;
    if (m->id)
        srv.events_sent++;
    conn_pop(c);
    c->last_write_ms = util_now_ms();
    return 0;
}

int sse_writable(struct conn *c)
{
    size_t used = 0;
    int writes = 0;

    if (!c || c->kind != CONN_SSE || !c->established)
        return 0;
    while (c->qlen && writes < WRITES_PER_CALLBACK) {
        struct feed_msg *m = c->q[c->qhead];
        const unsigned char *p;
        size_t len;
        if (!event_bytes(m, &p, &len))
            return -1;
        if (used && used + len > GATHER_MAX) {
            /* The gathered events first. */
            if (write_out(c, gather + LWS_PRE, used) < 0)
                return -1;
            used = 0;
            writes++;
            if (lws_send_pipe_choked(c->wsi))
                break;
            continue;
        }
        if (used == 0 && (c->qlen == 1 || len > GATHER_MAX)) {
            /* Alone (the usual live event) or large: from the frame itself. */
            if (sse_write_head(c) < 0)
                return -1;
            writes++;
        } else {
            memcpy(gather + LWS_PRE + used, p, len);
            used += len;
            if (m->id)
                srv.events_sent++;
            conn_pop(c);
        }
        /* A poll() of the socket: asked only when there is more to write. */
        if (used == 0 && c->qlen && lws_send_pipe_choked(c->wsi))
            break;
    }
    if (used) {
        if (write_out(c, gather + LWS_PRE, used) < 0)
            return -1;
        writes++;
    }
    if (writes)
        c->last_write_ms = util_now_ms();
    if (c->qlen == 0 && c->replaying && !c->close_code)
        replay_step(c);
    if (c->close_code && (c->qlen == 0 || c->close_code != LWS_CLOSE_STATUS_GOINGAWAY)) {
        /*
         * The database failed a replay: say so, so that curl -N shows why,
         * with a retry: line, since the stream may end before its ready
         * event (the database was down when it opened).
         */
        if (c->close_code == CLOSE_TRY_AGAIN_LATER && !lws_send_pipe_choked(c->wsi)) {
            size_t len;
            char *ev = error_event(c->close_reason, 503, &len);
            if (ev && len <= GATHER_MAX) {
                memcpy(gather + LWS_PRE, ev, len);
                write_out(c, gather + LWS_PRE, len);
            }
            free(ev);
        }
        return -1;
    }
    /*
     * Reading goes off only once the socket has taken everything: with it
     * off, lws would not finish a write it holds part of. (That is what
     * lws_partial_buffered() says, without the poll() of the socket that
     * lws_send_pipe_choked() adds.)
     */
    if (c->qlen)
        conn_want_write(c);
    else if (!lws_partial_buffered(c->wsi))
        rx_off(c);
    return 0;
}

/* The 200 answer of a stream, and any body sent with it (a refusal's). */
static int stream_head(struct lws *wsi, const char *body, size_t len)
{
    unsigned char head[LWS_PRE + 512];
    unsigned char *start = head + LWS_PRE, *p = start, *end = head + sizeof head;

#define ADD(name, value) lws_add_http_header_by_name(wsi, (const unsigned char *)(name), \
                             (const unsigned char *)(value), (int)strlen(value), &p, end)
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/event-stream",
                                    body ? (lws_filepos_t)len : LWS_ILLEGAL_HTTP_CONTENT_LEN, &p, end) ||
        ADD("cache-control:", "no-store") || ADD("x-content-type-options:", "nosniff") ||
        ADD("x-accel-buffering:", "no") ||
        lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
#undef ADD
    if (body) {
        memcpy(gather + LWS_PRE, body, len);
        if (lws_write(wsi, gather + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
            return -1;
    }
    return 0;
}

/* Beyond capacity: a 200 stream that says so, then ends, so EventSource comes back. */
static int answer_retry(struct lws *wsi, const char *why)
{
    size_t len;
    char *ev = error_event(why, 503, &len);
    int rc;

    srv.streams_refused++;
    log_info("refused an event stream: %s", why);
    if (!ev || len > GATHER_MAX) {
        free(ev);
        return -1;
    }
    rc = stream_head(wsi, ev, len);
    free(ev);
    return rc < 0 || lws_http_transaction_completed(wsi) ? -1 : 0;
}

int sse_serve(struct lws *wsi, struct conn *c)
{
    struct chat_fail f = { 0 };
    char why[160];

    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {
        memset(c, 0, sizeof *c);
        return handshake_answer(wsi, 405, "/events takes GET") < 0 ||
               lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (handshake_check_stream(wsi, c, &f) < 0) {
        if (f.code == CHAT_EUNAVAIL)
            return answer_retry(wsi, f.msg);
        return handshake_refuse(wsi, &f) < 0 || lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (srv.closing_all || srv.stop_signal)
        return answer_retry(wsi, "the server is stopping: retry shortly");
    if (srv.nstreams >= (size_t)srv.cfg.max_streams || srv.nconns >= (size_t)srv.cfg.max_conns) {
        snprintf(why, sizeof why, "the server is full (%d streams, %d connections): retry shortly",
                 srv.cfg.max_streams, srv.cfg.max_conns);
        return answer_retry(wsi, why);
    }
    if (stream_head(wsi, NULL, 0) < 0)
        return -1;
    /*
     * The header storage goes back to the pool, and no HTTP timeout cuts the
     * stream: what lws_http_mark_sse() does for HTTP/1 (the only protocol
     * chat-ws speaks), without the error line 4.1.6 logs for every stream
     * that is not an HTTP/2 one.
     */
    lws_http_headers_detach(wsi);
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    c->kind = CONN_SSE;
    c->announce = true;
    c->last_write_ms = util_now_ms();
    conn_open(wsi, c);
    conn_want_write(c);
    return 0;
}

/* Whether the client has closed its side (or reset it): a peek, never a wait. */
static bool client_left(struct conn *c)
{
    char b;
    ssize_t n = recv(lws_get_socket_fd(c->wsi), &b, 1, MSG_PEEK | MSG_DONTWAIT);

    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/*
 * Every tick: a ping to each stream idle for --sse-ping-secs, and a look
 * at a quarter of the streams for a client that left (each once a second).
 */
static void on_ping_tick(lws_sorted_usec_list_t *sul)
{
    static unsigned tick;
    int64_t now = util_now_ms(), idle = (int64_t)srv.cfg.sse_ping_secs * 1000;
    struct conn *c;

    tick++;
    LIST_FOREACH(c, &srv.conns, all) {
        if (c->kind != CONN_SSE || c->close_code)
            continue;
        if ((c->id & 3) == (tick & 3) && client_left(c)) {
            log_debug("event stream %llu in room %s: the client left", (unsigned long long)c->id, c->room);
            sse_end_now(c);
            continue;
        }
        if (c->qlen == 0 && now - c->last_write_ms >= idle && conn_push(c, ping))
            conn_want_write(c);
    }
    lws_sul_schedule(srv.ctx, 0, sul, on_ping_tick, PING_TICK_MS * LWS_US_PER_MS);
}

int sse_start(void)
{
    static const char text[] = ": ping\n\n";

    if (!(ping = feed_msg_new(text, sizeof text - 1)))
        return -1;
    lws_sul_schedule(srv.ctx, 0, &ping_timer, on_ping_tick, PING_TICK_MS * LWS_US_PER_MS);
    return 0;
}

void sse_stop(void)
{
    if (srv.ctx)
        lws_sul_cancel(&ping_timer);
    feed_msg_unref(ping);
    ping = NULL;
}
