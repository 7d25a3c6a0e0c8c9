/*
 * handshake.h - what chat-ws checks before it takes a connection (Origin,
 * room, index, tail, capacity), and the JSON answer of a refusal: a
 * connection dropped without one would reach the client as nginx's "retry
 * shortly" (SPEC section 4). Event loop only.
 */
#ifndef CHAT_WS_HANDSHAKE_H
#define CHAT_WS_HANDSHAKE_H

#include <libwebsockets.h>

#include "chat.h"
#include "conn.h"

/*
 * Fills *c (zeroed first) from the request and returns 0, or the refusal in
 * *f: CHAT_EUNAVAIL (stopping, or --max-conns open), CHAT_EFORBIDDEN (an
 * Origin outside the allow-list), CHAT_EBADREQ (room, index or tail, with
 * /get/msg's rules).
 */
int handshake_check(struct lws *wsi, struct conn *c, struct chat_fail *f);

/*
 * The checks of GET /events (SPEC section 8): fills *c (zeroed first) and
 * returns 0, or the refusal in *f: CHAT_EBADREQ (room, index, tail or
 * Last-Event-ID, with /get/msg's rules; Last-Event-ID replaces index and
 * tail), CHAT_EFORBIDDEN (an Origin sent and outside the allow-list).
 * Capacity is the caller's: its refusal is an event stream (sse.c).
 */
int handshake_check_stream(struct lws *wsi, struct conn *c, struct chat_fail *f);

/* Reads the name nginx authenticated (X-Chat-User), if any, into c->auth. */
void handshake_auth(struct lws *wsi, struct conn *c);

/*
 * Answers status with {"error": msg} and the headers of every API answer
 * (SPEC section 5), Retry-After on a 503, Upgrade on a 426 and Allow on a
 * 405. Returns 0, or -1 when it could not be written (the connection is
 * then dropped).
 */
int handshake_answer(struct lws *wsi, int status, const char *msg);

/* Counts and logs a refused handshake (or plain GET), and answers it. */
int handshake_refuse(struct lws *wsi, const struct chat_fail *f);

#endif
