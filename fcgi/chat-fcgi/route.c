/*
 * route.c - the {path, methods, handler} table and the request reader.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat_limits.h"
#include "log.h"
#include "metrics.h"
#include "reply.h"
#include "route.h"
#include "util.h"
#include "workers.h"

typedef int (*route_fn)(struct api_ctx *, FCGX_Request *, const struct params *, struct chat_fail *);

static const struct route {
    const char *path;        /* without a trailing slash, which is optional */
    const char *allow;       /* methods, as the Allow header lists them */
    bool body;               /* POST with a body is allowed */
    route_fn fn;
    enum metrics_route metric;
} routes[] = {
    { "/send/msg", "GET, POST", true,  api_send,    MR_SEND },
    { "/get/msg",  "GET, HEAD", false, api_get,     MR_GET },
    { "/healthz",  "GET, HEAD", false, api_healthz, MR_HEALTHZ },
    { "/metrics",  "GET, HEAD", false, api_metrics, MR_METRICS },
};

/* The request path without its query, and its length without a trailing slash. */
static const char *request_path(FCGX_Request *r, size_t *len)
{
    const char *path = FCGX_GetParam("DOCUMENT_URI", r->envp);
    const char *q;

    if (!path || !*path)
        path = FCGX_GetParam("SCRIPT_NAME", r->envp);
    if (!path || !*path)
        path = FCGX_GetParam("REQUEST_URI", r->envp);
    if (!path)
        path = "/";
    q = strchr(path, '?');
    *len = q ? (size_t)(q - path) : strlen(path);
    if (*len > 1 && path[*len - 1] == '/')
        (*len)--;
    return path;
}

static const struct route *route_find(const char *path, size_t len)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strlen(routes[i].path) == len && memcmp(routes[i].path, path, len) == 0)
            return &routes[i];
    return NULL;
}

/* True when method is one of the comma-separated names of rt->allow. */
static bool method_allowed(const struct route *rt, const char *method)
{
    size_t n = strlen(method);

    for (const char *a = rt->allow; *a; ) {
        size_t len = strcspn(a, ",");
        if (len == n && n > 0 && memcmp(a, method, n) == 0)
            return true;
        a += len;
        a += strspn(a, ", ");
    }
    return false;
}

/* True when the media type of a Content-Type header is type (parameters ignored). */
static bool media_is(const char *ct, const char *type)
{
    size_t n = strlen(type);
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return strncasecmp(ct, type, n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/*
 * Reads up to max bytes of the body into *out (malloc'd) and the rest to
 * the end of the stream into nothing, so that a parked request's socket
 * turns readable only when nginx closes it. Returns the body length, or -1
 * when the body was larger than max.
 */
static long read_body(FCGX_Request *r, size_t max, char **out)
{
    char sink[4096];
    size_t cap = 0, len = 0;
    bool over = false;
    int n;

    *out = NULL;
    for (;;) {
        if (!over && cap - len < sizeof sink) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;
            if (ncap > max + 1)
                ncap = max + 1;
            if (ncap <= cap) {
                over = true;
                continue;
            }
            if (!(nb = realloc(*out, ncap)))
                over = true;
            else {
                *out = nb;
                cap = ncap;
            }
        }
        if (over) {
            n = FCGX_GetStr(sink, sizeof sink, r->in);
        } else {
            n = FCGX_GetStr(*out + len, (int)(cap - len), r->in);
            len += n > 0 ? (size_t)n : 0;
            if (len > max)
                over = true;
        }
        if (n <= 0)
            break;
    }
    if (over || len == 0) {
        free(*out);
        *out = NULL;
    }
    return over ? -1 : (long)len;
}

/* Reads the body to its end and drops it. */
static void discard_body(FCGX_Request *r)
{
    char *none;
    read_body(r, 0, &none);
}

/* Decodes the query string and, for a POST, the body into *p. */
static int decode(FCGX_Request *r, const struct route *rt, const char *method,
                  struct params *p, struct chat_fail *f)
{
    const char *query = FCGX_GetParam("QUERY_STRING", r->envp);
    const char *ct = FCGX_GetParam("CONTENT_TYPE", r->envp);
    const char *cl = FCGX_GetParam("CONTENT_LENGTH", r->envp);
    size_t qlen = query ? strlen(query) : 0;
    int64_t declared = 0;
    char *body = NULL;
    long blen;
    int err = 0;

    if (cl && *cl && !util_parse_int(cl, strlen(cl), 0, INT64_MAX / 2, &declared))
        declared = 0;
    if (declared > CHAT_BODY_MAX) {
        discard_body(r);
        return chat_fail(f, CHAT_ETOOBIG, "body is larger than %d bytes", CHAT_BODY_MAX);
    }
    /* A declared body may come slowly (from a peer other than nginx, which sends it whole). */
    if (declared > 0)
        workers_reading_body(true);
    blen = read_body(r, CHAT_BODY_MAX, &body);
    if (declared > 0)
        workers_reading_body(false);
    if (blen < 0)
        return chat_fail(f, CHAT_ETOOBIG, "body is larger than %d bytes", CHAT_BODY_MAX);
    if (blen > 0 && (strcmp(method, "POST") != 0 || !rt->body)) {
        free(body);
        return chat_fail(f, CHAT_EBADREQ, "this request takes no body");
    }
    if (params_reserve(p, qlen + (size_t)blen) < 0) {
        free(body);
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    }
    if ((err = params_add_urlencoded(p, query ? query : "", qlen, f)) < 0)
        goto out;
    if (strcmp(method, "POST") == 0 && (blen > 0 || (ct && *ct))) {
        if (!ct || !*ct)
            err = chat_fail(f, CHAT_EMEDIA, "a body needs a Content-Type: "
                            "application/x-www-form-urlencoded or application/json");
        else if (media_is(ct, "application/x-www-form-urlencoded"))
            err = params_add_urlencoded(p, body ? body : "", (size_t)blen, f);
        else if (media_is(ct, "application/json"))
            err = blen > 0 ? params_add_json(p, body, (size_t)blen, PARAMS_SEND_KEYS, f)
                           : chat_fail(f, CHAT_EBADREQ, "not valid JSON: the body is empty");
        else
            err = chat_fail(f, CHAT_EMEDIA, "unsupported Content-Type %.60s: use "
                            "application/x-www-form-urlencoded or application/json", ct);
    }
out:
    free(body);
    return err;
}

void route_request(struct api_ctx *c, FCGX_Request *r)
{
    const char *method = FCGX_GetParam("REQUEST_METHOD", r->envp);
    const struct route *rt;
    struct params p;
    struct chat_fail f = { 0 };
    const char *path;
    size_t plen;
    int err;

    params_init(&p);
    if (!method)
        method = "GET";
    path = request_path(r, &plen);
    if (!(rt = route_find(path, plen))) {
        discard_body(r);
        err = chat_fail(&f, CHAT_ENOTFOUND, "no such API path: %.*s", (int)(plen > 80 ? 80 : plen), path);
    } else if (!method_allowed(rt, method)) {
        discard_body(r);
        err = chat_fail(&f, CHAT_EMETHOD, "method %.16s is not allowed here: use %s", method, rt->allow);
    } else if ((err = decode(r, rt, method, &p, &f)) == 0) {
        err = rt->fn(c, r, &p, &f);
    }
    params_free(&p);
    if (err < 0) {
        if (f.code >= 0)   /* a handler returned a code without words */
            chat_fail(&f, err, "request failed");
        if (err == CHAT_EINTERNAL)
            log_error("%s %.*s: %s", method, (int)plen, path, f.msg);
        metrics_request(rt ? rt->metric : MR_OTHER, chat_err_status(err));
        reply_fail(r, &f, rt ? rt->allow : NULL);
        reply_done(r);
    }
}
