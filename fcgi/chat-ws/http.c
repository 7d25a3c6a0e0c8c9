/*
 * http.c - plain HTTP requests to chat-ws (see http.h).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "handshake.h"
#include "http.h"
#include "prom.h"
#include "server.h"
#include "sse.h"

/* The counters of chat-ws in Prometheus text format. */
static int serve_metrics(struct lws *wsi)
{
    unsigned char head[LWS_PRE + 512];
    unsigned char *start = head + LWS_PRE, *p = start, *end = head + sizeof head;
    struct prom o;
    size_t len;
    char *page;
    unsigned char *body;
    int rc = -1;

    prom_begin(&o);
    prom_metric(&o, "chat_ws_open_sockets", "gauge", "WebSocket connections open now.",
                srv.nconns - srv.nstreams);
    prom_metric(&o, "chat_ws_connections_total", "counter", "WebSocket connections accepted.",
                srv.opened);
    prom_metric(&o, "chat_ws_refused_total", "counter",
                "Handshakes refused (origin, room, index or tail).", srv.refused);
    prom_metric(&o, "chat_ws_frames_sent_total", "counter", "Frames written to clients.",
                srv.frames_sent);
    prom_metric(&o, "chat_ws_messages_received_total", "counter", "Messages received from clients.",
                srv.received);
    prom_metric(&o, "chat_ws_closed_slow_total", "counter",
                "Connections closed with 1008 as too slow.", srv.closed_slow);
    prom_metric(&o, "chat_ws_open_streams", "gauge", "Server-sent events streams open now.",
                srv.nstreams);
    prom_metric(&o, "chat_ws_streams_total", "counter", "Event streams opened.", srv.streams_opened);
    prom_metric(&o, "chat_ws_streams_refused_total", "counter",
                "Event streams answered with a retry (full or stopping).", srv.streams_refused);
    prom_metric(&o, "chat_ws_events_sent_total", "counter", "Message events written to streams.",
                srv.events_sent);
    prom_metric(&o, "chat_ws_streams_closed_slow_total", "counter",
                "Event streams ended as too slow.", srv.streams_closed_slow);
    if (!(page = prom_end(&o, &len)))
        return -1;
    /* lws_write wants LWS_PRE bytes before the data. */
    if (!(body = malloc(LWS_PRE + len)))
        goto out;
    memcpy(body + LWS_PRE, page, len);
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4",
                                    (lws_filepos_t)len, &p, end) ||
        lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                    (const unsigned char *)"no-store", 8, &p, end) ||
        lws_finalize_write_http_header(wsi, start, &p, end) ||
        lws_write(wsi, body + LWS_PRE, len, LWS_WRITE_HTTP_FINAL) != (int)len)
        goto out;
    rc = lws_http_transaction_completed(wsi) ? -1 : 0;
out:
    free(body);
    free(page);
    return rc;
}

bool http_is_route(const char *path, const char *route)
{
    size_t n = strlen(route);
    return path && strncmp(path, route, n) == 0 && (path[n] == '\0' || (path[n] == '/' && path[n + 1] == '\0'));
}

int http_serve(struct lws *wsi, struct conn *c, const char *path)
{
    if (http_is_route(path, "/events"))
        return sse_serve(wsi, c);
    if (http_is_route(path, "/ws")) {
        struct conn probe;
        struct chat_fail f = { 0 };
        int n;
        /* lws names the URI by method: a plain request to /ws that is not a GET. */
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
            n = handshake_answer(wsi, 405, "/ws takes GET, with Upgrade: websocket");
        else if (handshake_check(wsi, &probe, &f) < 0)
            n = handshake_refuse(wsi, &f);
        else
            n = handshake_answer(wsi, 426, "this URL takes a WebSocket: send Upgrade: websocket");
        return n < 0 || lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    if (http_is_route(path, "/metrics")) {
        if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
            return handshake_answer(wsi, 405, "/metrics/ws takes GET") < 0 ||
                   lws_http_transaction_completed(wsi) ? -1 : 0;
        return serve_metrics(wsi);
    }
    lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
    return -1;
}
