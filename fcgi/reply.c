/*
 * reply.c - the one place that turns a status or a refusal into bytes on
 * the FastCGI connection.
 */
#include <stdio.h>
#include <stdlib.h>

#include "render.h"
#include "reply.h"

static const char *status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
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
    char head[512];
    int n;

    n = snprintf(head, sizeof head,
                 "Status: %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Cache-Control: no-store\r\n"
                 "X-Content-Type-Options: nosniff\r\n"
                 "Content-Length: %zu\r\n"
                 "%s\r\n",
                 status, status_text(status), type, len, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof head)
        return;
    FCGX_PutStr(head, n, r->out);
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

void reply_done(FCGX_Request *r)
{
    if (!r)
        return;
    /*
     * Detached, libfcgi closes the socket without shutting it down and
     * waiting for nginx to close first: the body was read to its end, so
     * nothing unread is left to provoke a reset.
     */
    FCGX_Detach(r);
    FCGX_Finish_r(r);
    free(r);
}
