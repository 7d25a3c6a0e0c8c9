/*
 * http.h - chat-ws's plain HTTP answers: GET /metrics, and GET /ws without
 * Upgrade (the handshake's checks, then 426). Event loop only.
 */
#ifndef CHAT_WS_HTTP_H
#define CHAT_WS_HTTP_H

#include <libwebsockets.h>

/* LWS_CALLBACK_HTTP for path. Returns 0, or -1 to close the connection. */
int http_serve(struct lws *wsi, const char *path);

#endif
