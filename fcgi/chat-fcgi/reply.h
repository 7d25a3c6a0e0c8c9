/*
 * reply.h - FastCGI answers: the status line, the headers every API answer
 * carries, JSON bodies, and the end of a request.
 */
#ifndef CHAT_REPLY_H
#define CHAT_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include <fcgiapp.h>

#include "chat.h"

/*
 * Writes a JSON answer: Status, Content-Type: application/json,
 * Cache-Control: no-store, Content-Length, the optional extra header lines
 * (each ending in "\r\n"), then body. Write errors (a client gone) are
 * ignored: the request is ended by reply_done() either way.
 */
void reply_json(FCGX_Request *r, int status, const char *extra, const char *body, size_t len);

/* The same with another Content-Type (for /metrics). */
void reply_body(FCGX_Request *r, int status, const char *type, const char *extra,
                const char *body, size_t len);

/*
 * Writes the JSON error of a refusal with its status; a 503 carries
 * Retry-After: 1 and a 405 carries "allow" as its Allow header.
 */
void reply_fail(FCGX_Request *r, const struct chat_fail *f, const char *allow);

/*
 * Ends a request and frees it (r was malloc'd; reply_done(NULL) is a no-op):
 * writes the end of the request (FCGI_END_REQUEST), frees every buffer of
 * the request, then either gives its connection to the keeper (when one is
 * set, nginx asked to keep the connection, its body was read to the end and
 * every write succeeded) or closes it at once, without libfcgi's lingering
 * read.
 */
void reply_done(FCGX_Request *r);

/*
 * Where connections go when their request ends (workers.c; none by
 * default: every connection is closed). keep(ctx, fd, false) comes just
 * before fd is closed; keep(ctx, fd, true) after the request was freed,
 * with fd open and now the keeper's (to wait for its next request, or to
 * close). Set before any request and cleared after the last; any thread
 * calls it.
 */
typedef void reply_keep_fn(void *ctx, int fd, bool open);
void reply_keeper(reply_keep_fn *keep, void *ctx);

/*
 * Writes a whole JSON answer with status (and the optional extra header
 * lines, as for reply_json) on connection fd for FastCGI request
 * request_id, without a libfcgi request (the hold's parked long-polls):
 * the head and body in FCGI_STDOUT records, the end of the
 * stream and FCGI_END_REQUEST, in one writev() when it fits. Blocks up to
 * the connection's write timeout. Returns 0 when all was written, -1
 * otherwise (errno set; the connection is then not to be kept).
 */
int reply_raw(int fd, int request_id, int status, const char *extra, const char *body, size_t len);

/*
 * Ends a connection whose request was answered with reply_raw (or whose
 * client left): to the keeper when keep (nginx asked for it and the answer
 * was written), otherwise closed.
 */
void reply_release(int fd, bool keep);

#endif
