/*
 * load_client.c - the fan-out load client of the benchmarks: raw sockets,
 * one epoll loop, keep-alive, so that what a run measures is the server
 * and not the client (a client whose own CPU is saturated reports itself).
 *
 *   load_client MODE URL N EXPECT TIMEOUT_S
 *
 * MODE says the protocol and whose server it is:
 *   lp          this system's long-poll: GET URL&index=<max_index of the
 *               last answer>&wait=30, the texts read from "data"
 *   lp-nchan    Nchan's long-poll: re-polls with If-Modified-Since and
 *               If-None-Match from the last answer, one message an answer
 *   ws          this system's WebSocket: each text frame is a message object
 *   ws-nchan    Nchan's WebSocket: each text frame is the published text
 *   sse         this system's /events (HTTP/1.0): `data:` is a message object;
 *               the `ready` event is not a message
 *   sse-nchan   Nchan's eventsource subscriber: `data:` is the text
 * URL is http://HOST:PORT/PATH?QUERY (ws:// is accepted for ws modes).
 * A message text is "<index> <wall time its send request started, in s>".
 *
 * Prints "ready" once every subscriber has its first request out (lp) or
 * its stream open (ws: 101, sse: 200 and for this system its ready event),
 * then collects EXPECT messages on each. At the end (all received, or
 * TIMEOUT_S after ready) prints one JSON line: deliveries, lost,
 * duplicated, subscribers out of order, streams closed early, requests
 * made, errors, the client's own CPU seconds from ready to the end
 * (cpu_s), latency median/p90/p99/max in ms, and every latency with LAT=1
 * in the environment. An SSE stream or WebSocket refused with 404 prints
 * "absent" instead of "ready" and exits 3.
 *
 * WebSocket frames are parsed here by hand (server frames are unmasked and
 * small; pings are answered): this is a measuring tool, not part of the
 * product, which uses libwebsockets.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { LP, LP_NCHAN, WS, WS_NCHAN, SSE, SSE_NCHAN };
enum state { IDLE, CONNECTING, WAITING, STREAMING };

#define BUF_MAX (4 << 20)

struct sub {
    int fd;
    enum state st;
    char *buf;                 /* bytes read and not yet consumed */
    size_t len, cap;
    char out[1024];            /* bytes to write */
    size_t out_len, out_off;
    long long cursor;          /* lp: max_index of the last answer */
    char last_modified[64], etag[64];
    unsigned char *seen;       /* EXPECT flags */
    int n_seen, n_unique, last_index;
    bool ordered_broken, done, ready, closed_early;
    double retry_at;           /* IDLE: reconnect at this monotonic time */
};

static enum mode mode;
static struct sockaddr_in addr;
static char host[128], path_query[2048];
static int n_subs, expect, epfd;
static struct sub *subs;
static double *lat;
static size_t n_lat, cap_lat;
static long long requests, errors;
static int n_ready, n_done, n_absent;
static int n_retrying;         /* IDLE subscribers with a reconnect due */

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_now(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static bool is_ws(void) { return mode == WS || mode == WS_NCHAN; }
static bool is_sse(void) { return mode == SSE || mode == SSE_NCHAN; }
static bool is_lp(void) { return mode == LP || mode == LP_NCHAN; }

/* One message text "<i> <t>" seen by s at now. */
static void record(struct sub *s, const char *text, size_t len, double now)
{
    char tmp[64], *end;
    long i;
    double t;

    if (len >= sizeof tmp)
        len = sizeof tmp - 1;
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    i = strtol(tmp, &end, 10);
    if (end == tmp || *end != ' ')
        return;
    t = strtod(end + 1, NULL);
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 65536;
        lat = realloc(lat, cap_lat * sizeof *lat);
        if (!lat) {
            perror("realloc");
            exit(1);
        }
    }
    lat[n_lat++] = (now - t) * 1000;
    s->n_seen++;
    if (i >= 0 && i < expect && !s->seen[i]) {
        s->seen[i] = 1;
        s->n_unique++;
    }
    if (s->n_seen > 1 && i <= s->last_index)
        s->ordered_broken = true;
    s->last_index = (int)i;
    if (!s->done && s->n_unique >= expect) {
        s->done = true;
        n_done++;
    }
}

/* The string value after "key": in a JSON text (no nesting of that key), or NULL. */
static const char *json_str(const char *p, const char *end, const char *key, size_t *len)
{
    size_t kl = strlen(key);
    const char *q = memmem(p, (size_t)(end - p), key, kl);
    const char *v;

    if (!q)
        return NULL;
    v = q + kl;
    while (v < end && *v != '"')
        v++;
    if (v >= end)
        return NULL;
    q = ++v;
    while (q < end && *q != '"')
        q += *q == '\\' ? 2 : 1;
    *len = (size_t)(q - v);
    return v;
}

/* Drops s's connection; it reconnects after delay seconds (never when delay < 0). */
static void schedule_reconnect(struct sub *s, double delay)
{
    if (delay >= 0)
        n_retrying++;
    if (s->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
        close(s->fd);
    }
    s->fd = -1;
    s->st = IDLE;
    s->len = 0;
    s->out_len = s->out_off = 0;
    s->retry_at = delay >= 0 ? mono_now() + delay : 1e18;
}

static void want(struct sub *s, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.ptr = s };
    epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev);
}

/* Writes what is pending; false when the connection failed. */
static bool flush_out(struct sub *s)
{
    while (s->out_off < s->out_len) {
        ssize_t n = write(s->fd, s->out + s->out_off, s->out_len - s->out_off);
        if (n < 0) {
            if (errno == EAGAIN) {
                want(s, EPOLLIN | EPOLLOUT);
                return true;
            }
            return false;
        }
        s->out_off += (size_t)n;
    }
    s->out_len = s->out_off = 0;
    want(s, EPOLLIN);
    return true;
}

/* Queues the next request (lp) or the opening request (ws, sse). */
static bool send_request(struct sub *s)
{
    int n;

    switch (mode) {
    case LP:
        n = snprintf(s->out, sizeof s->out, "GET %s&index=%lld&wait=30 HTTP/1.1\r\nHost: %s\r\n\r\n",
                     path_query, s->cursor, host);
        break;
    case LP_NCHAN:
        if (s->last_modified[0])
            n = snprintf(s->out, sizeof s->out, "GET %s HTTP/1.1\r\nHost: %s\r\nIf-Modified-Since: %s\r\n"
                         "If-None-Match: %s\r\n\r\n", path_query, host, s->last_modified, s->etag);
        else
            n = snprintf(s->out, sizeof s->out, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", path_query, host);
        break;
    case WS: case WS_NCHAN:
        n = snprintf(s->out, sizeof s->out, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", path_query, host);
        break;
    default:
        n = snprintf(s->out, sizeof s->out, "GET %s HTTP/1.0\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                     path_query, host);
        break;
    }
    s->out_len = (size_t)n;
    s->out_off = 0;
    requests++;
    s->st = WAITING;
    return flush_out(s);
}

static void start_conn(struct sub *s)
{
    struct epoll_event ev = { .events = EPOLLOUT, .data.ptr = s };
    int one = 1;

    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        errors++;
        schedule_reconnect(s, 0.1);
        return;
    }
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        errors++;
        schedule_reconnect(s, 0.1);
        return;
    }
    s->st = CONNECTING;
    epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev);
}

static void consume(struct sub *s, size_t n)
{
    memmove(s->buf, s->buf + n, s->len - n);
    s->len -= n;
}

/* A header's value in the head [p, end), copied into out; false when absent. */
static bool header(const char *p, const char *end, const char *name, char *out, size_t size)
{
    size_t nl = strlen(name);

    for (const char *line = p; line < end; ) {
        const char *eol = memmem(line, (size_t)(end - line), "\r\n", 2);
        if (!eol)
            eol = end;
        if ((size_t)(eol - line) > nl + 1 && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            size_t len;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            len = (size_t)(eol - v);
            if (len >= size)
                len = size - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return true;
        }
        line = eol + 2;
    }
    return false;
}

/*
 * A complete chunked body at b (len bytes): decoded in place; returns the
 * bytes the encoded body took, or 0 when it is not complete yet.
 */
static size_t dechunk(char *b, size_t len, size_t *body_len)
{
    size_t in = 0, out = 0;

    for (;;) {
        char *eol = memmem(b + in, len - in, "\r\n", 2);
        unsigned long n;
        if (!eol)
            return 0;
        n = strtoul(b + in, NULL, 16);
        in = (size_t)(eol - b) + 2;
        if (n == 0) {
            char *end = memmem(b + in, len - in, "\r\n", 2);   /* no trailers expected */
            if (!end)
                return 0;
            *body_len = out;
            return (size_t)(end - b) + 2;
        }
        if (len - in < n + 2)
            return 0;
        memmove(b + out, b + in, n);
        out += n;
        in += n + 2;
    }
}

static void lp_answer(struct sub *s, int status, const char *body, size_t blen, const char *head,
                      const char *head_end, double now)
{
    if (status == 200 && mode == LP) {
        const char *end = body + blen, *p = memmem(body, blen, "\"max_index\":", 12);
        const char *d = memmem(body, blen, "\"data\":[", 8);
        if (p)
            s->cursor = strtoll(p + 12, NULL, 10);
        if (d) {
            for (p = d + 8; p < end && *p != ']'; ) {
                const char *q;
                if (*p != '"') {
                    p++;
                    continue;
                }
                q = ++p;
                while (q < end && *q != '"')
                    q += *q == '\\' ? 2 : 1;
                record(s, p, (size_t)(q - p), now);
                p = q + 1;
            }
        }
    } else if (status == 200) {
        record(s, body, blen, now);
        header(head, head_end, "Last-Modified", s->last_modified, sizeof s->last_modified);
        header(head, head_end, "Etag", s->etag, sizeof s->etag);
    } else if (status != 304 && status != 408) {
        errors++;
    }
}

/* One SSE event (its lines in [p, end)). */
static void sse_event(struct sub *s, const char *p, const char *end, double now)
{
    const char *data = NULL, *type = NULL;
    size_t dlen = 0, tlen = 0;

    for (const char *line = p; line < end; ) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            eol = end;
        if (eol - line >= 5 && memcmp(line, "data:", 5) == 0) {
            data = line + 5 + (line[5] == ' ');
            dlen = (size_t)(eol - data);
        } else if (eol - line >= 6 && memcmp(line, "event:", 6) == 0) {
            type = line + 6 + (line[6] == ' ');
            tlen = (size_t)(eol - type);
        }
        line = eol + 1;
    }
    if (type && tlen == 5 && memcmp(type, "ready", 5) == 0) {
        if (!s->ready) {
            s->ready = true;
            n_ready++;
        }
        return;
    }
    if (type && !(tlen == 7 && memcmp(type, "message", 7) == 0)) {
        errors++;   /* event: error, or anything else */
        return;
    }
    if (!data)
        return;   /* a comment (: ping) or a lone retry: */
    if (mode == SSE) {
        size_t len;
        const char *t = json_str(data, data + dlen, "\"text\":", &len);
        if (t)
            record(s, t, len, now);
    } else {
        record(s, data, dlen, now);
    }
}

/* Parses what s has read. Returns false when the connection must be dropped. */
static bool process(struct sub *s, double now)
{
    for (;;) {
        if (s->st == WAITING) {
            char *head_end = memmem(s->buf, s->len, "\r\n\r\n", 4);
            char value[64];
            int status;
            size_t head_len, body_len;
            bool closing;

            if (!head_end)
                return true;
            head_len = (size_t)(head_end - s->buf) + 4;
            status = s->len > 12 ? atoi(s->buf + 9) : 0;
            if (is_ws() || is_sse()) {
                if (status == 404) {
                    n_absent++;
                    return false;
                }
                if ((is_ws() && status != 101) || (is_sse() && status != 200)) {
                    errors++;
                    return false;
                }
                consume(s, head_len);
                s->st = STREAMING;
                if (!s->ready && (is_ws() || mode == SSE_NCHAN)) {
                    s->ready = true;
                    n_ready++;
                }
                continue;
            }
            closing = header(s->buf, head_end, "Connection", value, sizeof value) &&
                      strcasecmp(value, "close") == 0;
            if (header(s->buf, head_end, "Transfer-Encoding", value, sizeof value) &&
                strcasecmp(value, "chunked") == 0) {
                size_t used = dechunk(s->buf + head_len, s->len - head_len, &body_len);
                if (!used)
                    return true;
                lp_answer(s, status, s->buf + head_len, body_len, s->buf, head_end, now);
                consume(s, head_len + used);
            } else {
                body_len = header(s->buf, head_end, "Content-Length", value, sizeof value)
                               ? strtoul(value, NULL, 10) : 0;
                if (s->len < head_len + body_len)
                    return true;
                lp_answer(s, status, s->buf + head_len, body_len, s->buf, head_end, now);
                consume(s, head_len + body_len);
            }
            if (closing)
                return false;
            if (s->done)
                return true;   /* stays connected, idle */
            if (!send_request(s))
                return false;
            continue;
        }
        if (s->st != STREAMING)
            return true;
        if (is_sse()) {
            char *e = memmem(s->buf, s->len, "\n\n", 2);
            if (!e)
                return true;
            sse_event(s, s->buf, e, now);
            consume(s, (size_t)(e - s->buf) + 2);
            continue;
        }
        /* WebSocket frames from the server: unmasked. */
        {
            unsigned char *b = (unsigned char *)s->buf;
            uint64_t plen;
            size_t hl = 2;
            int op;

            if (s->len < 2)
                return true;
            op = b[0] & 0x0f;
            plen = b[1] & 0x7f;
            if (plen == 126) {
                if (s->len < 4)
                    return true;
                plen = (uint64_t)b[2] << 8 | b[3];
                hl = 4;
            } else if (plen == 127) {
                if (s->len < 10)
                    return true;
                plen = 0;
                for (int i = 0; i < 8; i++)
                    plen = plen << 8 | b[2 + i];
                hl = 10;
            }
            if (s->len < hl + plen)
                return true;
            if (op == 1 || op == 0) {
                const char *p = s->buf + hl;
                if (mode == WS) {
                    size_t len;
                    const char *t = json_str(p, p + plen, "\"text\":", &len);
                    if (t)
                        record(s, t, len, now);
                } else {
                    record(s, p, (size_t)plen, now);
                }
            } else if (op == 9 && plen <= 125 && s->out_len == 0) {
                /* pong, masked with a zero key */
                unsigned char *o = (unsigned char *)s->out;
                o[0] = 0x8a;
                o[1] = 0x80 | (unsigned char)plen;
                memset(o + 2, 0, 4);
                memcpy(o + 6, b + hl, plen);
                s->out_len = 6 + plen;
                s->out_off = 0;
                if (!flush_out(s))
                    return false;
            } else if (op == 8) {
                return false;
            }
            consume(s, hl + (size_t)plen);
        }
    }
}

/*
 * The connection ended or must end: a long-poll reconnects at once (nginx
 * closes a kept connection after keepalive_requests); a stream is not
 * reopened, and counts as closed early when it had not seen everything.
 */
static void drop(struct sub *s)
{
    if (is_lp() && n_absent == 0) {
        schedule_reconnect(s, 0);
        return;
    }
    if (!s->done)
        s->closed_early = true;
    schedule_reconnect(s, -1);
}

static void on_event(struct sub *s, uint32_t ev)
{

    if (s->st == CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            errors++;
            schedule_reconnect(s, 0.1);
            return;
        }
        if (!send_request(s)) {
            errors++;
            schedule_reconnect(s, 0.1);
        }
        return;
    }
    if ((ev & EPOLLOUT) && !flush_out(s)) {
        errors++;
        schedule_reconnect(s, 0.1);
        return;
    }
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        size_t room;
        ssize_t n;
        if (s->cap - s->len < 16384) {
            size_t ncap = s->cap ? s->cap * 2 : 32768;
            if (ncap > BUF_MAX) {
                errors++;
                schedule_reconnect(s, 0.1);
                return;
            }
            s->buf = realloc(s->buf, ncap);
            s->cap = ncap;
        }
        room = s->cap - s->len;
        n = read(s->fd, s->buf + s->len, room);
        if (n > 0) {
            s->len += (size_t)n;
            if ((size_t)n < room)
                break;   /* a short read: nothing more now */
            continue;
        }
        if (n < 0 && errno == EAGAIN)
            break;
        /* Closed or failed: what was read may still complete an answer. */
        process(s, wall_now());
        drop(s);
        return;
    }
    if (!process(s, wall_now()))
        drop(s);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    size_t i = (size_t)(p / 100 * (double)(n_lat - 1) + 0.5);
    return n_lat ? lat[i < n_lat ? i : n_lat - 1] : 0;
}

static void finish(double cpu0)
{
    long long lost = 0, dup = 0, out_of_order = 0, closed_early = 0;
    double cpu = cpu_now() - cpu0;

    for (int i = 0; i < n_subs; i++) {
        struct sub *s = &subs[i];
        lost += expect - s->n_unique;
        dup += s->n_seen - s->n_unique;
        out_of_order += s->ordered_broken;
        closed_early += s->closed_early;
    }
    qsort(lat, n_lat, sizeof *lat, cmp_double);
    printf("{\"deliveries\":%zu,\"lost\":%lld,\"dup\":%lld,\"outOfOrder\":%lld,\"closedEarly\":%lld,"
           "\"requests\":%lld,\"errors\":%lld,\"cpu_s\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
           "\"max\":%.3f", n_lat, lost, dup, out_of_order, closed_early, requests, errors, cpu,
           pct(50), pct(90), pct(99), n_lat ? lat[n_lat - 1] : 0.0);
    if (getenv("LAT")) {
        fputs(",\"lat\":[", stdout);
        for (size_t i = 0; i < n_lat; i++)
            printf(i ? ",%.3f" : "%.3f", lat[i]);
        fputc(']', stdout);
    }
    fputs("}\n", stdout);
    fflush(stdout);
}

static void parse_url(const char *url)
{
    const char *p = strstr(url, "://"), *slash, *colon;
    int port = 80;

    p = p ? p + 3 : url;
    slash = strchr(p, '/');
    if (!slash)
        slash = p + strlen(p);
    colon = memchr(p, ':', (size_t)(slash - p));
    snprintf(host, sizeof host, "%.*s", (int)(slash - p), p);
    if (colon)
        port = atoi(colon + 1);
    snprintf(path_query, sizeof path_query, "%s", *slash ? slash : "/");
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, colon ? strndupa(p, (size_t)(colon - p)) : strndupa(p, (size_t)(slash - p)),
                  &addr.sin_addr) != 1) {
        fprintf(stderr, "load_client: %s: a numeric IPv4 address is needed\n", url);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    static const char *names[] = { "lp", "lp-nchan", "ws", "ws-nchan", "sse", "sse-nchan" };
    struct rlimit rl;
    double timeout_s, deadline = 0, cpu0 = 0, next_batch;
    int started = 0;
    bool said_ready = false;

    if (argc != 6) {
        fprintf(stderr, "usage: load_client lp|lp-nchan|ws|ws-nchan|sse|sse-nchan URL N EXPECT TIMEOUT_S\n");
        return 2;
    }
    mode = (enum mode)-1;
    for (int i = 0; i < 6; i++)
        if (strcmp(argv[1], names[i]) == 0)
            mode = (enum mode)i;
    if ((int)mode < 0) {
        fprintf(stderr, "load_client: unknown mode %s\n", argv[1]);
        return 2;
    }
    parse_url(argv[2]);
    n_subs = atoi(argv[3]);
    expect = atoi(argv[4]);
    timeout_s = atof(argv[5]);
    if (n_subs < 1 || expect < 1 || timeout_s <= 0) {
        fprintf(stderr, "load_client: N, EXPECT and TIMEOUT_S must be positive\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    subs = calloc((size_t)n_subs, sizeof *subs);
    for (int i = 0; i < n_subs; i++) {
        subs[i].fd = -1;
        subs[i].last_index = -1;
        subs[i].seen = calloc((size_t)expect, 1);
        subs[i].st = IDLE;
        subs[i].retry_at = 1e18;   /* started in batches below */
    }
    next_batch = mono_now();
    for (;;) {
        struct epoll_event evs[256];
        double now = mono_now();
        int timeout = 10, n;

        /* Start subscribers a hundred at a time, every 10 ms, as a browser crowd would not flood accept(). */
        if (started < n_subs && now >= next_batch) {
            for (int k = 0; k < 100 && started < n_subs; k++, started++)
                start_conn(&subs[started]);
            next_batch = now + 0.01;
        }
        if (!said_ready && n_absent > 0) {
            puts("absent");
            fflush(stdout);
            return 3;
        }
        if (!said_ready && started == n_subs) {
            int out = 0;
            for (int i = 0; i < n_subs; i++)
                out += is_lp() ? subs[i].st == WAITING || subs[i].done : subs[i].ready;
            if (out == n_subs) {
                said_ready = true;
                puts("ready");
                fflush(stdout);
                deadline = now + timeout_s;
                cpu0 = cpu_now();
            }
        }
        if (said_ready && (n_done == n_subs || now >= deadline))
            break;
        for (int i = 0; n_retrying > 0 && i < started; i++)
            if (subs[i].st == IDLE && subs[i].retry_at <= now) {
                n_retrying--;
                start_conn(&subs[i]);
            }
        n = epoll_wait(epfd, evs, 256, timeout);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
    finish(cpu0);
    return 0;
}
