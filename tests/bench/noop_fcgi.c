/*
 * noop_fcgi.c - W0 of the benchmarks: the ceiling of this architecture. A
 * FastCGI responder on the same libfcgi, with the same thread count and
 * socket type as chat-fcgi's defaults, that answers {} to every request
 * without touching SQLite.
 *
 *   noop_fcgi SOCKET_PATH [THREADS]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>

#include <fcgiapp.h>

static int listen_fd;

static void *serve(void *arg)
{
    FCGX_Request r;

    (void)arg;
    FCGX_InitRequest(&r, listen_fd, 0);
    while (FCGX_Accept_r(&r) == 0) {
        char sink[1024];
        while (FCGX_GetStr(sink, sizeof sink, r.in) > 0)
            ;
        FCGX_PutS("Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", r.out);
        FCGX_Detach(&r);          /* closed as chat-fcgi closes: no lingering read */
        FCGX_Finish_r(&r);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = argc > 2 ? atoi(argv[2]) : 8;
    pthread_t t;

    if (argc < 2) {
        fprintf(stderr, "usage: noop_fcgi SOCKET_PATH [THREADS]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    FCGX_Init();
    if ((listen_fd = FCGX_OpenSocket(argv[1], 1024)) < 0)
        return 1;
    for (int i = 1; i < threads; i++)
        pthread_create(&t, NULL, serve, NULL);
    serve(NULL);
    return 0;
}
