/*
 * sse.h - the server-sent events transport (SPEC section 8): GET /events,
 * its ready event, messages as events, pings on an idle stream, and the
 * ways a stream ends. A stream is a conn (conn.h) of kind CONN_SSE: it is
 * replayed (replay.c) and goes live (rooms.c) as a WebSocket does; only
 * its framing and its ending are its own. Event loop only; main.c's
 * protocol callback and http.c call these.
 */
#ifndef CHAT_WS_SSE_H
#define CHAT_WS_SSE_H

#include <stdbool.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "conn.h"

/* Sent first on every stream, and in a refusal: how long EventSource waits to reconnect. */
#define SSE_RETRY_MS 2000

/*
 * LWS_CALLBACK_HTTP for GET /events. Answers 400/403 JSON (a bad room,
 * index, tail or Last-Event-ID; a foreign Origin) or 405 (not a GET);
 * beyond --max-streams or --max-conns, or while stopping, a 200 retry
 * stream (a retry: line and one `event: error`, then the end); else opens
 * the stream on *c. Returns 0, or -1 to close the connection.
 */
int sse_serve(struct lws *wsi, struct conn *c);

/* Asks for a writable callback (see conn_want_write). */
void sse_want_write(struct conn *c);

/* LWS_CALLBACK_HTTP_WRITEABLE: writes what is queued; ends the stream when asked. -1 closes. */
int sse_writable(struct conn *c);
/* Writes the event at the head of the queue and drops it. -1: the socket failed. */
int sse_write_head(struct conn *c);

/*
 * Queues a stream's first event: the retry line and the ready event, whose
 * id is the cursor the replay starts after (from) and whose data carries
 * the room's latest id and, under retention, pruned.
 */
void sse_ready(struct conn *c, int64_t from, int64_t max_index, bool pruned);

/*
 * Ends a stream at once, whatever is queued (too slow, or its client left),
 * on the loop's next turn; an EventSource resumes by Last-Event-ID.
 */
void sse_end_now(struct conn *c);

/* Starts the timer of pings (every stream idle for --sse-ping-secs). Returns 0, -1 out of memory. */
int sse_start(void);
/* Stops it, before lws_context_destroy (streams still queueing a ping keep it alive). */
void sse_stop(void);

#endif
