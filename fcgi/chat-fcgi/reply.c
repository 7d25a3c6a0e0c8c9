/*
 * reply.c - the one place that turns a status or a refusal into bytes on
 * the FastCGI connection.
 *
 * Answers go through libfcgi's output stream, except those of parked
 * long-polls (reply_raw): a parked request keeps no libfcgi request (its
 * two 8 KiB buffers and parameters would be held for the whole wait, and
 * its answer copied into each), so the hold writes the FastCGI records
 * itself, with one writev() and the body shared by every waiter of a
 * cursor. The records are the ones libfcgi writes for an answer:
 * FCGI_STDOUT with the content, an empty FCGI_STDOUT, FCGI_END_REQUEST.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "render.h"
#include "reply.h"
#include "util.h"

#define HEAD_MAX 512

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

/* The CGI head of an answer into head (512 bytes); returns its length, 0 when it does not fit. */
static size_t head_build(char *head, int status, const char *type, const char *extra, size_t len)
{
    static const char common[] = "\r\nCache-Control: no-store\r\n"
                                 "X-Content-Type-Options: nosniff\r\nContent-Length: ";
    char *p = head;

    if (strlen(type) + (extra ? strlen(extra) : 0) + 160 > HEAD_MAX)
        return 0;
    p = util_put(p, "Status: ", 8);
    p = util_put_int(p, status);
    *p++ = ' ';
    p = util_put_str(p, status_text(status));
    p = util_put(p, "\r\nContent-Type: ", 16);
    p = util_put_str(p, type);
    p = util_put(p, common, sizeof common - 1);
    p = util_put_int(p, (int64_t)len);
    p = util_put(p, "\r\n", 2);
    if (extra)
        p = util_put_str(p, extra);
    p = util_put(p, "\r\n", 2);
    return (size_t)(p - head);
}

void reply_body(FCGX_Request *r, int status, const char *type, const char *extra,
                const char *body, size_t len)
{
    char head[HEAD_MAX];
    size_t n = head_build(head, status, type, extra, len);

    if (!n)
        return;
    FCGX_PutStr(head, (int)n, r->out);
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

/* A FastCGI record header (FastCGI 1.0, section 3.3). */
static void fcgi_header(unsigned char *h, int type, int id, size_t len)
{
    h[0] = 1;
    h[1] = (unsigned char)type;
    h[2] = (unsigned char)(id >> 8);
    h[3] = (unsigned char)id;
    h[4] = (unsigned char)(len >> 8);
    h[5] = (unsigned char)len;
    h[6] = h[7] = 0;
}

/* Writes all of iov[0..n) (advancing it); returns 0 or -1. */
static int write_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t k = writev(fd, iov, n > IOV_MAX ? IOV_MAX : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (n > 0 && (size_t)k >= iov->iov_len) {
            k -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + k;
            iov->iov_len -= (size_t)k;
        }
    }
    return 0;
}

int reply_raw(int fd, int request_id, int status, const char *extra, const char *body, size_t len)
{
    enum { REC_MAX = 65535, FCGI_STDOUT = 6, FCGI_END_REQUEST = 3 };
    char head[HEAD_MAX];
    size_t hlen = head_build(head, status, "application/json", extra, len);
    size_t total = hlen + len, nrec = (total + REC_MAX - 1) / REC_MAX;
    /* A record header each, the content in at most two pieces each, the end. */
    struct iovec small[3 * 4 + 1], *iov = small;
    unsigned char smallhdr[4][8], *hdrs = &smallhdr[0][0];
    unsigned char end[24];
    size_t at = 0;
    int n = 0, rc;

    if (!hlen)
        return -1;
    if (nrec > 4) {   /* over 256 KiB: a long page of long texts */
        struct iovec *big = malloc((3 * nrec + 1) * sizeof *big);
        unsigned char *bighdr = malloc(nrec * 8);
        if (!big || !bighdr) {
            free(big);
            free(bighdr);
            return -1;
        }
        iov = big;
        hdrs = bighdr;
    }
    for (size_t r = 0; r < nrec; r++) {
        size_t clen = total - at < REC_MAX ? total - at : REC_MAX, stop = at + clen;
        fcgi_header(hdrs + 8 * r, FCGI_STDOUT, request_id, clen);
        iov[n++] = (struct iovec){ hdrs + 8 * r, 8 };
        if (at < hlen) {
            size_t upto = stop < hlen ? stop : hlen;
            iov[n++] = (struct iovec){ head + at, upto - at };
            at = upto;
        }
        if (at < stop) {
            iov[n++] = (struct iovec){ (char *)body + (at - hlen), stop - at };
            at = stop;
        }
    }
    /* The end of the output stream, then FCGI_END_REQUEST: application status 0, request complete. */
    fcgi_header(end, FCGI_STDOUT, request_id, 0);
    fcgi_header(end + 8, FCGI_END_REQUEST, request_id, 8);
    memset(end + 16, 0, 8);
    iov[n++] = (struct iovec){ end, sizeof end };
    rc = write_all(fd, iov, n);
    if (iov != small) {
        free(iov);
        free(hdrs);
    }
    return rc;
}

void reply_release(int fd, bool keep)
{
    if (keep && keeper) {
        keeper(keeper_ctx, fd, true);
        return;
    }
    if (keeper)
        keeper(keeper_ctx, fd, false);
    close(fd);
}
