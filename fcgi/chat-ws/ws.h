/*
 * ws.h - the WebSocket transport (SPEC section 4): the handshake's checks,
 * client messages in, frames out, and the close codes. Event loop only;
 * main.c's protocol callback calls these.
 */
#ifndef CHAT_WS_WS_H
#define CHAT_WS_WS_H

#include <stddef.h>

#include <libwebsockets.h>

#include "conn.h"

/* LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: 0 to go on, 1 refused with an answer, -1 to drop. */
int ws_confirm_upgrade(struct lws *wsi, const char *upgrade);
/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: fills *c; non-zero hangs up. */
int ws_filter(struct lws *wsi, struct conn *c);
/*
 * lws has begun to close the socket (the client's close frame, or one it
 * sends for a frame refused): out of its room, and no frame written after.
 */
void ws_closing(struct conn *c);
/* LWS_CALLBACK_RECEIVE: a fragment of a client message. -1 closes. */
int ws_receive(struct conn *c, const char *in, size_t len);
/* Writes the frame at the head of the queue and drops it. -1: the socket failed. */
int ws_write_head(struct conn *c);
/* LWS_CALLBACK_SERVER_WRITEABLE: writes what is queued, closes when asked. -1 closes. */
int ws_writable(struct conn *c);

#endif
