/*
 * noop_fcgi.c - W0 and W0k of the benchmarks: the ceiling of this
 * architecture. A FastCGI responder on the same libfcgi and socket type as
 * chat-fcgi, run with as many threads as chat-fcgi's serve at once (one
 * per CPU), that answers {} to every request without touching SQLite.
 *
 *   noop_fcgi SOCKET_PATH [THREADS] [keep]
 *
 * Without `keep` (W0) each thread loops in libfcgi's FCGX_Accept_r and the
 * connection is closed after every request, as chat-fcgi did before it
 * kept connections. With `keep` (W0k) it serves connections as chat-fcgi's
 * workers.c does: one epoll set of the listening socket and the idle
 * connections (EPOLLONESHOT), threads taking a connection only when it is
 * readable, and a connection kept when nginx asked (FCGI_KEEP_CONN); no
 * read timeouts or sweeps, which cost nothing per request.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fcgiapp.h>

#define LISTENER UINT64_MAX

static const char answer[] = "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
static int listen_fd, epfd;

static void *serve_close(void *arg)
{
    FCGX_Request r;

    (void)arg;
    FCGX_InitRequest(&r, listen_fd, 0);
    while (FCGX_Accept_r(&r) == 0) {
        char sink[1024];
        while (FCGX_GetStr(sink, sizeof sink, r.in) > 0)
            ;
        FCGX_PutStr(answer, sizeof answer - 1, r.out);
        r.keepConnection = 0;
        FCGX_Detach(&r);          /* closed as chat-fcgi closes: no lingering read */
        FCGX_Finish_r(&r);
    }
    return NULL;
}

static void arm(int fd, int op)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.u64 = (uint64_t)fd };
    if (epoll_ctl(epfd, op, fd, &ev) < 0)
        close(fd);
}

static void *serve_keep(void *arg)
{
    (void)arg;
    for (;;) {
        struct epoll_event ev;
        FCGX_Request *r;
        char sink[1024];
        bool keep;
        int fd;

        if (epoll_wait(epfd, &ev, 1, -1) != 1)
            continue;
        if (ev.data.u64 == LISTENER) {
            struct epoll_event lev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = LISTENER };
            int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            epoll_ctl(epfd, EPOLL_CTL_MOD, listen_fd, &lev);
            if (c >= 0)
                arm(c, EPOLL_CTL_ADD);
            continue;
        }
        fd = (int)ev.data.u64;
        r = malloc(sizeof *r);
        FCGX_InitRequest(r, -1, 0);
        r->ipcFd = fd;
        r->keepConnection = 1;
        FCGX_Detach(r);
        if (FCGX_Accept_r(r) < 0) {   /* libfcgi closed it */
            free(r);
            continue;
        }
        while (FCGX_GetStr(sink, sizeof sink, r->in) > 0)
            ;
        FCGX_PutStr(answer, sizeof answer - 1, r->out);
        keep = r->keepConnection && FCGX_HasSeenEOF(r->in) == EOF;
        if ((FCGX_FClose(r->err) != 0) | (FCGX_FClose(r->out) != 0))
            keep = false;
        r->keepConnection = keep;
        FCGX_Finish_r(r);
        free(r);
        if (keep)
            arm(fd, EPOLL_CTL_MOD);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 2 ? atoi(argv[2]) : 8;
    bool keep = argc > 3 && strcmp(argv[3], "keep") == 0;
    void *(*serve)(void *) = keep ? serve_keep : serve_close;
    pthread_t t;

    if (argc < 2) {
        fprintf(stderr, "usage: noop_fcgi SOCKET_PATH [THREADS] [keep]\n");
        return 2;
    }
    /* chat-fcgi's allocator settings: libfcgi's buffers of each request are
     * kept for the next, not given back to the kernel and faulted in again. */
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    FCGX_Init();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, SIG_DFL);   /* libfcgi's handler only ends its own accept loop */
    if ((listen_fd = FCGX_OpenSocket(argv[1], 1024)) < 0)
        return 1;
    if (keep) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLONESHOT, .data.u64 = LISTENER };
        int fl = fcntl(listen_fd, F_GETFL);
        fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK);
        epfd = epoll_create1(EPOLL_CLOEXEC);
        epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev);
    }
    for (int i = 1; i < threads; i++)
        pthread_create(&t, NULL, serve, NULL);
    serve(NULL);
    return 0;
}
