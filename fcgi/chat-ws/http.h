/*
 * http.h - chat-ws's plain HTTP answers: GET /metrics, GET /ws without
 * Upgrade (the handshake's checks, then 426), and the start of GET /events
 * (sse.c). Event loop only.
 */
#ifndef CHAT_WS_HTTP_H
#define CHAT_WS_HTTP_H

#include <libwebsockets.h>

#include "conn.h"

/* LWS_CALLBACK_HTTP for path, c its session. Returns 0, or -1 to close the connection. */
int http_serve(struct lws *wsi, struct conn *c, const char *path);

/* Whether path is route, or route with a trailing slash (SPEC: optional on every route). */
bool http_is_route(const char *path, const char *route);

#endif
