/*
 * ws.c - the WebSocket transport (see ws.h).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "handshake.h"
#include "http.h"
#include "log.h"
#include "params.h"
#include "rate.h"
#include "replay.h"
#include "rooms.h"
#include "server.h"
#include "util.h"
#include "valid.h"
#include "ws.h"

#define MSG_MAX 65536            /* a client message over this closes with 1009 */
#define WRITES_PER_CALLBACK 16   /* frames written per writable callback */

_Static_assert(LWS_PRE <= FEED_HEADROOM, "feed frames need LWS_PRE bytes of headroom");

/*
 * Whether the client offers no subprotocol or offers "chat" among those of
 * Sec-WebSocket-Protocol (lws would hang up on a list without it).
 */
static bool subprotocol_ok(struct lws *wsi)
{
    char list[256];
    int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);

    if (n <= 0)
        return true;
    if (n >= (int)sizeof list || lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) <= 0)
        return false;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t len;
        t += strspn(t, " \t");
        len = strcspn(t, " \t");
        if (len == 4 && memcmp(t, "chat", 4) == 0)
            return true;
    }
    return false;
}

int ws_confirm_upgrade(struct lws *wsi, const char *upgrade)
{
    struct conn probe;
    struct chat_fail f = { 0 };
    char path[16];

    /* Refused here, with an answer (>0: lws completes the transaction). */
    if (!upgrade || strcasecmp(upgrade, "websocket") != 0)
        return 0;
    /* Without a key lws would hang up, and nginx say 503: a request that cannot succeed. */
    if (lws_hdr_total_length(wsi, WSI_TOKEN_KEY) <= 0)
        chat_fail(&f, CHAT_EBADREQ, "a WebSocket handshake needs a Sec-WebSocket-Key header");
    else if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 || !http_is_route(path, "/ws"))
        chat_fail(&f, CHAT_ENOTFOUND, "no WebSocket here: /ws takes one");
    else if (!subprotocol_ok(wsi))
        chat_fail(&f, CHAT_EBADREQ, "no WebSocket subprotocol offered is served here: offer \"chat\" or none");
    else if (handshake_check(wsi, &probe, &f) == 0)
        return 0;
    return handshake_refuse(wsi, &f) < 0 ? -1 : 1;
}

int ws_filter(struct lws *wsi, struct conn *c)
{
    struct chat_fail f = { 0 };

    /* Checked already; this fills the session (a refusal now only hangs up). */
    if (handshake_check(wsi, c, &f) < 0) {
        srv.refused++;
        return 1;
    }
    handshake_auth(wsi, c);
    /* Here, since the answer (101) goes out before ESTABLISHED. */
    replay_fix_start(c);
    return 0;
}

static void handle_message(struct conn *c, const char *data, size_t len)
{
    struct params p;
    struct valid_send m;
    struct chat_fail f = { 0 };

    srv.received++;
    if (srv.cfg.sends_per_sec > 0 &&
        !rate_take(&c->tokens, &c->tokens_at, srv.cfg.sends_per_sec, util_now_ms())) {
        chat_fail(&f, CHAT_ETOOMANY, "too many messages: at most %d a second", srv.cfg.sends_per_sec);
        conn_error(c, &f);
        return;
    }
    params_init(&p);
    if (params_ws_frame(&p, data, len, c->room, c->room_len, &m, &f) == 0 &&
        params_auth_user(&m, c->auth, c->auth_len, &f) == 0)
        writer_submit(srv.writer, c->id, &m, &f);
    params_free(&p);
    if (f.code != CHAT_OK)
        conn_error(c, &f);
}

void ws_closing(struct conn *c)
{
    c->closing = true;
    rooms_remove(c);
}

int ws_receive(struct conn *c, const char *in, size_t len)
{
    bool final = lws_is_final_fragment(c->wsi) && lws_remaining_packet_payload(c->wsi) == 0;

    if (c->close_code)
        return 0;
    if (lws_frame_is_binary(c->wsi)) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE,
                         (unsigned char *)"binary messages are not accepted", 32);
        ws_closing(c);
        return -1;
    }
    if (c->rx_len + len > MSG_MAX) {
        lws_close_reason(c->wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
                         (unsigned char *)"message over 64 KiB", 19);
        ws_closing(c);
        return -1;
    }
    if (final && !c->rx) {
        handle_message(c, in, len);       /* the common case: one fragment */
        return 0;
    }
    if (len) {
        char *nb = realloc(c->rx, c->rx_len + len);
        if (!nb) {
            ws_closing(c);
            return -1;
        }
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

int ws_write_head(struct conn *c)
{
    struct feed_msg *m = c->q[c->qhead];

    if (lws_write(c->wsi, m->buf + FEED_HEADROOM, m->len, LWS_WRITE_TEXT) < (int)m->len)
        return -1;
    srv.frames_sent++;
    conn_pop(c);
    return 0;
}

int ws_writable(struct conn *c)
{
    if (c->closing)
        return 0;   /* lws sends its close frame: nothing may follow it */
    /*
     * The socket is writable when lws calls this: the first frame goes
     * without asking. lws_send_pipe_choked() is a poll() of the socket, a
     * system call a frame if asked every time: only before the next ones.
     */
    for (int i = 0; i < WRITES_PER_CALLBACK && c->qlen && (i == 0 || !lws_send_pipe_choked(c->wsi)); i++)
        if (ws_write_head(c) < 0)
            return -1;
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
