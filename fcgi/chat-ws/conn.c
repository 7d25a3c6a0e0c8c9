/*
 * conn.c - a subscriber's bounded queue and the set of open connections
 * (see conn.h).
 */
#include <stdlib.h>

#include "conn.h"
#include "log.h"
#include "render.h"
#include "replay.h"
#include "rooms.h"
#include "server.h"
#include "sse.h"
#include "ws.h"

bool conn_push(struct conn *c, struct feed_msg *m)
{
    if (c->qlen == srv.cfg.max_queue)
        return false;
    if (c->qlen == c->qcap) {
        unsigned ncap = c->qcap ? c->qcap * 2 : 8;
        struct feed_msg **nq;
        if (ncap > srv.cfg.max_queue)
            ncap = srv.cfg.max_queue;
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

void conn_pop(struct conn *c)
{
    feed_msg_unref(c->q[c->qhead]);
    c->qhead = (c->qhead + 1) % c->qcap;
    c->qlen--;
}

void conn_queue_clear(struct conn *c)
{
    while (c->qlen)
        conn_pop(c);
    free(c->q);
    c->q = NULL;
    c->qcap = c->qhead = 0;
}

void conn_want_write(struct conn *c)
{
    if (c->kind == CONN_SSE)
        sse_want_write(c);
    else
        lws_callback_on_writable(c->wsi);
}

void conn_write_soon(struct conn *c)
{
    int err;

    if (c->qlen != 1 || c->replaying || c->close_code || c->closing || !c->established ||
        lws_partial_buffered(c->wsi) || lws_get_network_wsi(c->wsi) != c->wsi) {
        conn_want_write(c);
        return;
    }
    err = c->kind == CONN_SSE ? sse_write_head(c) : ws_write_head(c);
    if (err < 0)
        lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    else if (lws_partial_buffered(c->wsi))
        conn_want_write(c);   /* lws holds the rest: its writable callback sends it */
}

void conn_close_later(struct conn *c, int code, const char *reason)
{
    if (!c->close_code) {
        c->close_code = code;
        c->close_reason = reason;
    }
    conn_want_write(c);
}

void conn_too_slow(struct conn *c)
{
    conn_queue_clear(c);
    if (c->kind == CONN_SSE) {
        log_info("event stream %llu in room %s too slow: ended", (unsigned long long)c->id, c->room);
        srv.streams_closed_slow++;
        sse_end_now(c);
        return;
    }
    log_info("connection %llu in room %s too slow: closed with 1008",
             (unsigned long long)c->id, c->room);
    srv.closed_slow++;
    conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
}

void conn_reply(struct conn *c, char *json, size_t len)
{
    struct feed_msg *m = json ? feed_msg_new(json, len) : NULL;

    free(json);
    if (!m) {
        conn_close_later(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
        return;
    }
    if (!conn_push(c, m))
        conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
    else
        conn_want_write(c);
    feed_msg_unref(m);
}

void conn_error(struct conn *c, const struct chat_fail *f)
{
    size_t len;
    char *json = render_ws_error(f->msg, chat_err_status(f->code), &len);
    conn_reply(c, json, len);
}

void conn_open(struct lws *wsi, struct conn *c)
{
    c->wsi = wsi;
    c->id = ++srv.next_id;
    LIST_INSERT_HEAD(&srv.conns, c, all);
    srv.nconns++;
    if (c->kind == CONN_SSE) {
        srv.nstreams++;
        srv.streams_opened++;
    } else {
        srv.opened++;
    }
    c->established = true;
    feed_set_listening(srv.feed, true);
    replay_start(c);
}

void conn_gone(struct conn *c)
{
    if (!c->established)
        return;
    c->established = false;
    rooms_remove(c);
    LIST_REMOVE(c, all);
    srv.nconns--;
    if (c->kind == CONN_SSE)
        srv.nstreams--;
    conn_queue_clear(c);
    free(c->rx);
    c->rx = NULL;
    if (srv.nconns == 0)
        feed_set_listening(srv.feed, false);
}

struct conn *conn_find(uint64_t id)
{
    struct conn *c;

    LIST_FOREACH(c, &srv.conns, all)
        if (c->id == id)
            return c;
    return NULL;
}
