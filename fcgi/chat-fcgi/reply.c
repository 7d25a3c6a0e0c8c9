/*
 * reply.c - the one place that turns a status or a refusal into bytes on
 * the FastCGI connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "reply.h"
#include "util.h"

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default:  return "Internal Server Error";
    }
}

void reply_json(FCGX_Request *r, int status, const char *extra, const char *body, size_t len)
{
    reply_body(r, status, "application/json", extra, body, len);
}

void reply_body(FCGX_Request *r, int status, const char *type, const char *extra,
                const char *body, size_t len)
{
    static const char common[] = "\r\nCache-Control: no-store\r\n"
                                 "X-Content-Type-Options: nosniff\r\nContent-Length: ";
    const char *text = status_text(status);
    char head[512], *p = head;

    if (strlen(type) + (extra ? strlen(extra) : 0) + 160 > sizeof head)
        return;
    p = util_put(p, "Status: ", 8);
    p = util_put_int(p, status);
    *p++ = ' ';
    p = util_put_str(p, text);
    p = util_put(p, "\r\nContent-Type: ", 16);
    p = util_put_str(p, type);
    p = util_put(p, common, sizeof common - 1);
    p = util_put_int(p, (int64_t)len);
    p = util_put(p, "\r\n", 2);
    if (extra)
        p = util_put_str(p, extra);
    p = util_put(p, "\r\n", 2);
    FCGX_PutStr(head, (int)(p - head), r->out);
    FCGX_PutStr(body, (int)len, r->out);
}

void reply_fail(FCGX_Request *r, const struct chat_fail *f, const char *allow)
{
    static const char fallback[] = "{\"error\":\"out of memory\"}";
    char extra[128] = "";
    int status = chat_err_status(f->code);
    size_t len;
    char *body = render_error(f->msg, &len);

    if (status == 503)
        snprintf(extra, sizeof extra, "Retry-After: 1\r\n");
    else if (status == 405 && allow)
        snprintf(extra, sizeof extra, "Allow: %s\r\n", allow);
    if (body)
        reply_json(r, status, extra, body, len);
    else
        reply_json(r, 503, "Retry-After: 1\r\n", fallback, sizeof fallback - 1);
    free(body);
}

static reply_keep_fn *keeper;
static void *keeper_ctx;

void reply_keeper(reply_keep_fn *keep, void *ctx)
{
    keeper = keep;
    keeper_ctx = ctx;
}

void reply_done(FCGX_Request *r)
{
    bool keep;
    int fd;

    if (!r)
        return;
    fd = r->ipcFd;
    /*
     * Kept only when nginx asked (FCGI_KEEP_CONN) and the body was read to
     * its end: the next bytes on the connection are the next request's.
     * The end of the request is written here, as FCGX_Finish_r would (the
     * error stream first, then the output with FCGI_END_REQUEST), so that a
     * failed write is known before the choice.
     */
    keep = keeper && r->keepConnection && r->in && FCGX_HasSeenEOF(r->in) == EOF;
    if ((FCGX_FClose(r->err) != 0) | (FCGX_FClose(r->out) != 0) | (r->in && FCGX_GetError(r->in) != 0))
        keep = false;
    if (!keep && keeper)
        keeper(keeper_ctx, fd, false);   /* while fd is open: its number is nobody else's yet */
    r->keepConnection = keep;
    /*
     * Detached, libfcgi closes the socket without shutting it down and
     * waiting for nginx to close first: the body was read to its end, so
     * nothing unread is left to provoke a reset.
     */
    FCGX_Detach(r);
    FCGX_Finish_r(r);
    free(r);
    if (keep)
        keeper(keeper_ctx, fd, true);
}
