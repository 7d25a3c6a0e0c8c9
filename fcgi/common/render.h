/*
 * render.h - the only module that builds JSON (with json-c).
 *
 * Every function returns a malloc'd, NUL-terminated string and stores its
 * length in *len, or returns NULL when out of memory. The caller frees it.
 * Stored text that is not valid UTF-8 (a blob or bad bytes written with the
 * sqlite3 CLI) is rendered with U+FFFD in place of each bad byte.
 */
#ifndef CHAT_RENDER_H
#define CHAT_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* {"data":[texts],"max_index":N,"messages":[rows],"more":bool} */
char *render_page(const struct store_page *page, size_t *len);

/* One row as a message object: {"id":..,"room":..,"user":..,"text":..,"ts":..} */
char *render_message(const struct store_msg *m, size_t *len);

/* {"ok":true,"id":N,"room":"...","ts":N} plus "duplicate":true for a repeated cid. */
char *render_sent(const struct store_sent *sent, const char *room, size_t room_len, size_t *len);

/* {"ok":true,"held":N,"probes":N}: long-polls held now, change probes made */
char *render_health(size_t held, int64_t probes, size_t *len);

/* A WebSocket reply frame: {"error":"...","code":N} */
char *render_ws_error(const char *msg, int code, size_t *len);

/* A WebSocket reply frame: {"duplicate":true,"id":N} */
char *render_ws_duplicate(int64_t id, size_t *len);

/*
 * The data of a server-sent events stream's ready event (SPEC section 8):
 * {"room":"...","max_index":N} plus "pruned":true when retention deleted
 * messages after the stream's cursor.
 */
char *render_sse_ready(const char *room, size_t room_len, int64_t max_index, bool pruned,
                       size_t *len);

/* {"error":"..."} */
char *render_error(const char *msg, size_t *len);

#endif
