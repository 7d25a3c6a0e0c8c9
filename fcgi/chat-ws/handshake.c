/*
 * handshake.c - the checks of a new connection and the answer of a refusal
 * (see handshake.h).
 */
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "log.h"
#include "params.h"
#include "render.h"
#include "server.h"
#include "util.h"

#define ARGS_MAX 16384           /* bytes of a URL's decoded arguments: nginx's request line */
#define AUTH_HEADER "x-chat-user:"  /* set by nginx: the name it authenticated (lws lower-cases names) */
#define LAST_EVENT_ID "last-event-id:"  /* an EventSource's resume point */

/*
 * Whether the Origin is in the allow-list; without_origin says when none
 * is sent. /ws refuses a request without one when a list is set: a
 * browser's WebSocket always sends one, and the page's plain GET that asks
 * why a socket failed (same-origin: it sends none) must hear the socket's
 * answer. /events lets one in (a same-site EventSource sends none).
 */
static bool origin_allowed(struct lws *wsi, bool without_origin)
{
    char origin[256];
    const char *list = srv.cfg.origins;
    size_t n;

    if (!list)
        return true;
    if (lws_hdr_total_length(wsi, WSI_TOKEN_ORIGIN) <= 0)
        return without_origin;
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
 * Reads room, index and tail from the URL's arguments (libwebsockets has
 * decoded them) with the rules of /get/msg (params_subscribe) into *c.
 */
static int read_args(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    char buf[ARGS_MAX];
    size_t used = 0;
    struct params p;
    struct sub_args a;
    int err = 0;

    params_init(&p);
    for (int i = 0; err == 0; i++) {
        int len = lws_hdr_fragment_length(wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
        char *arg = buf + used, *eq;

        if (len < 0 || (size_t)len >= sizeof buf - used) {
            err = chat_fail(f, CHAT_EBADREQ, "the URL's arguments are longer than %d bytes", ARGS_MAX);
            break;
        }
        /* An empty argument ("a=1&&b=2") has length 0 too: only a failed copy ends the list. */
        if (lws_hdr_copy_fragment(wsi, arg, (int)(sizeof buf - used), WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
            break;
        used += (size_t)len + 1;
        if ((eq = strchr(arg, '=')))
            err = params_add_pair(&p, arg, (size_t)(eq - arg), eq + 1, strlen(eq + 1), f);
    }
    if (err == 0 && (err = params_subscribe(&p, &a, f)) == 0) {
        c->room_len = a.room_len;
        memcpy(c->room, a.room, a.room_len);
        c->room[a.room_len] = '\0';
        c->cursor = a.index;
        c->tail = a.tail;
        c->live_only = a.live;
    }
    params_free(&p);
    return err;
}

void handshake_auth(struct lws *wsi, struct conn *c)
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

int handshake_check(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    memset(c, 0, sizeof *c);
    if (srv.closing_all || srv.stop_signal)
        return chat_fail(f, CHAT_EUNAVAIL, "the WebSocket server is stopping: retry shortly");
    if (!origin_allowed(wsi, false))
        return chat_fail(f, CHAT_EFORBIDDEN, "this page's Origin is not allowed to open a WebSocket here");
    if (read_args(wsi, c, f) < 0)
        return f->code;
    if (srv.nconns >= (size_t)srv.cfg.max_conns)
        return chat_fail(f, CHAT_EUNAVAIL, "the WebSocket server is full (%d sockets): retry shortly",
                         srv.cfg.max_conns);
    return 0;
}

/*
 * Last-Event-ID, sent by an EventSource that reconnects: with the rules of
 * index, it replaces index and tail. An empty one is none (a browser sends
 * none before its first id).
 */
static int read_last_event_id(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    int n = lws_hdr_custom_length(wsi, LAST_EVENT_ID, (int)strlen(LAST_EVENT_ID));
    char *v;
    int64_t id;
    bool ok;

    if (n <= 0)
        return 0;
    /* Leading zeros are allowed, as in index: the value, not its length, is bounded. */
    if (!(v = malloc((size_t)n + 1)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    ok = lws_hdr_custom_copy(wsi, v, n + 1, LAST_EVENT_ID, (int)strlen(LAST_EVENT_ID)) == n &&
         util_parse_int(v, (size_t)n, 0, CHAT_INDEX_MAX, &id);
    free(v);
    if (!ok)
        return chat_fail(f, CHAT_EBADREQ, "Last-Event-ID must be a whole number from 0 to %lld",
                         (long long)CHAT_INDEX_MAX);
    c->cursor = id;
    c->tail = 0;
    c->live_only = false;
    return 0;
}

int handshake_check_stream(struct lws *wsi, struct conn *c, struct chat_fail *f)
{
    memset(c, 0, sizeof *c);
    if (read_args(wsi, c, f) < 0 || read_last_event_id(wsi, c, f) < 0)
        return f->code;
    /* A same-origin EventSource sends no Origin; another site's page does. */
    if (!origin_allowed(wsi, true))
        return chat_fail(f, CHAT_EFORBIDDEN, "this page's Origin is not allowed to read events here");
    return 0;
}

static const char *status_line(int status)
{
    switch (status) {
    case 400: return "HTTP/1.1 400 Bad Request";
    case 403: return "HTTP/1.1 403 Forbidden";
    case 404: return "HTTP/1.1 404 Not Found";
    case 405: return "HTTP/1.1 405 Method Not Allowed";
    case 426: return "HTTP/1.1 426 Upgrade Required";
    case 503: return "HTTP/1.1 503 Service Unavailable";
    default:  return "HTTP/1.1 500 Internal Server Error";
    }
}

int handshake_answer(struct lws *wsi, int status, const char *msg)
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
    /*
     * The status line as HTTP/1.1 says it; an HTTP/2 stream (h2c, on
     * chat-ws's own port: nginx never passes that upgrade on) has no status
     * line but a :status, which lws writes.
     */
    if ((lws_get_network_wsi(wsi) == wsi
         ? lws_add_http_header_by_name(wsi, NULL, (const unsigned char *)line, (int)strlen(line), &p, end)
         : lws_add_http_header_status(wsi, (unsigned)status, &p, end)) ||
        lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
                                     (const unsigned char *)"application/json", 16, &p, end) ||
        lws_add_http_header_content_length(wsi, len, &p, end) ||
        ADD("cache-control:", "no-store") || ADD("x-content-type-options:", "nosniff") ||
        (status == 503 && ADD("retry-after:", "1")) ||
        (status == 426 && ADD("upgrade:", "websocket")) ||
        (status == 405 && ADD("allow:", "GET")) ||
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

int handshake_refuse(struct lws *wsi, const struct chat_fail *f)
{
    srv.refused++;
    log_info("refused a connection (%d): %s", chat_err_status(f->code), f->msg);
    return handshake_answer(wsi, chat_err_status(f->code), f->msg);
}
