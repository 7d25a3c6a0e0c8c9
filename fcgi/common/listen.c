/*
 * listen.c - opening, inheriting and accepting on the listening socket.
 *
 * Connections are accepted here, not by libfcgi's FCGX_Accept_r: libfcgi
 * reads a connection's first records inside its accept, with blocking
 * reads and no timeout, so a client that connects and sends nothing (or
 * stops half-way) would hold a worker for ever, and a stop with it. Each
 * accepted socket gets a read timeout before libfcgi reads from it. It
 * cannot be set once on the listening socket instead: Linux copies
 * SO_RCVTIMEO to the sockets a TCP listener accepts but not to those of a
 * unix socket, it makes accept() itself time out, and an inherited socket
 * is not ours to change (it outlives this process).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "listen.h"
#include "util.h"

bool listen_is_path(const char *addr)
{
    return strchr(addr, '/') != NULL;
}

int listen_unix_clear(const char *path, struct chat_fail *f)
{
    struct sockaddr_un sa;
    struct stat st;

    if (strlen(path) >= sizeof sa.sun_path)
        return chat_fail(f, CHAT_EBADREQ, "socket path %s is longer than %zu bytes",
                         path, sizeof sa.sun_path - 1);
    if (lstat(path, &st) == 0) {
        int fd, rc, e;
        if (!S_ISSOCK(st.st_mode))
            return chat_fail(f, CHAT_EBADREQ, "%s exists and is not a socket", path);
        /* A socket a live process listens on is not stale: leave it to it. */
        sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
        memcpy(sa.sun_path, path, strlen(path) + 1);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
            return chat_fail(f, CHAT_EINTERNAL, "socket: %s", strerror(errno));
        rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
        e = errno;
        close(fd);
        if (rc == 0 || e == EAGAIN)
            return chat_fail(f, CHAT_EBADREQ, "%s is in use: another process listens on it", path);
        if (e != ECONNREFUSED && e != ENOENT)
            return chat_fail(f, CHAT_EBADREQ, "cannot tell whether %s is in use: %s", path, strerror(e));
        unlink(path);
    }
    return 0;
}

int listen_unix_own(const char *path, unsigned mode, long gid, struct chat_fail *f)
{
    if (chmod(path, mode) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "cannot set the mode of %s: %s", path, strerror(errno));
    if (gid >= 0 && chown(path, (uid_t)-1, (gid_t)gid) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "cannot give %s to group %ld: %s (is this process in it?)",
                         path, gid, strerror(errno));
    return 0;
}

static int open_unix(const char *path, int backlog, unsigned mode, long gid, struct chat_fail *f)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    mode_t old;
    int fd, rc;

    if ((rc = listen_unix_clear(path, f)) < 0)
        return rc;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "socket: %s", strerror(errno));
    /* No window in which the socket exists with looser permissions. */
    old = umask(0777 & ~mode);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return chat_fail(f, CHAT_EINTERNAL, "cannot listen on %s: %s", path, strerror(e));
    }
    if ((rc = listen_unix_own(path, mode, gid, f)) < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

int listen_split(const char *addr, char *host, size_t host_size, int *port, bool *v6,
                 struct chat_fail *f)
{
    const char *colon = strrchr(addr, ':');
    size_t n;
    int64_t p;

    if (!colon || !util_parse_int(colon + 1, strlen(colon + 1), 1, 65535, &p) ||
        (size_t)(colon - addr) >= host_size)
        return chat_fail(f, CHAT_EBADREQ, "listen address %s is not PATH, HOST:PORT or :PORT", addr);
    n = (size_t)(colon - addr);
    *v6 = n > 0 && addr[0] == '[';
    if (*v6) {
        if (n < 2 || addr[n - 1] != ']')
            return chat_fail(f, CHAT_EBADREQ, "bad IPv6 address in %s", addr);
        memcpy(host, addr + 1, n - 2);
        host[n - 2] = '\0';
    } else if (n == 0) {
        snprintf(host, host_size, "127.0.0.1");
    } else {
        memcpy(host, addr, n);
        host[n] = '\0';
    }
    *port = (int)p;
    return 0;
}

static int open_tcp(const char *addr, int backlog, struct chat_fail *f)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t sslen;
    char host[128];
    int port, fd, one = 1, err;
    bool v6;

    if ((err = listen_split(addr, host, sizeof host, &port, &v6, f)) < 0)
        return err;
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1)
            return chat_fail(f, CHAT_EBADREQ, "bad IPv6 address in %s", addr);
        sslen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return chat_fail(f, CHAT_EBADREQ, "bad IPv4 address in %s (use a numeric address)", addr);
        sslen = sizeof *s4;
    }
    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return chat_fail(f, CHAT_EINTERNAL, "cannot listen on %s: %s", addr, strerror(e));
    }
    return fd;
}

int listen_open(const char *addr, int backlog, unsigned mode, long gid, struct chat_fail *f)
{
    return listen_is_path(addr) ? open_unix(addr, backlog, mode, gid, f) : open_tcp(addr, backlog, f);
}

/* A listening stream socket, of any family. */
static bool is_listener(int fd)
{
    return sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) > 0;
}

int listen_inherited(void)
{
    /* sd_listen_fds() checks LISTEN_PID, unsets the variables, sets FD_CLOEXEC. */
    if (sd_listen_fds(1) >= 1 && is_listener(SD_LISTEN_FDS_START))
        return SD_LISTEN_FDS_START;
    return is_listener(0) ? 0 : -1;
}

/*
 * libfcgi's allow-list of web server addresses (FCGI_WEB_SERVER_ADDRS,
 * comma-separated IPv4 addresses), applied as libfcgi applies it: to IPv4
 * peers only. Read once.
 */
#define ALLOW_MAX 64
static struct in_addr allow[ALLOW_MAX];
static int allow_n = -1;       /* -1: no list, every peer is welcome */
static pthread_once_t allow_once = PTHREAD_ONCE_INIT;

static void allow_load(void)
{
    const char *env = getenv("FCGI_WEB_SERVER_ADDRS");
    char buf[1024], *save = NULL;

    if (!env || strlen(env) >= sizeof buf)
        return;
    memcpy(buf, env, strlen(env) + 1);
    allow_n = 0;
    for (char *t = strtok_r(buf, ", \t", &save); t && allow_n < ALLOW_MAX; t = strtok_r(NULL, ", \t", &save))
        if (inet_pton(AF_INET, t, &allow[allow_n]) == 1)
            allow_n++;
}

static bool peer_allowed(const struct sockaddr_storage *ss)
{
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

    pthread_once(&allow_once, allow_load);
    if (allow_n < 0 || ss->ss_family != AF_INET)
        return true;
    for (int i = 0; i < allow_n; i++)
        if (allow[i].s_addr == s4->sin_addr.s_addr)
            return true;
    return false;
}

int listen_accept(int fd, int read_timeout_ms, int write_timeout_ms)
{
    struct timeval tv = { .tv_sec = read_timeout_ms / 1000, .tv_usec = read_timeout_ms % 1000 * 1000 };
    struct timeval wtv = { .tv_sec = write_timeout_ms / 1000, .tv_usec = write_timeout_ms % 1000 * 1000 };

    for (;;) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int one = 1, c = accept4(fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);

        if (c < 0) {
            switch (errno) {
            /* The peer left before it was accepted: take the next one. */
            case ECONNABORTED: case EPROTO: case ECONNRESET: case ETIMEDOUT:
            case EHOSTUNREACH: case ENETUNREACH:
                continue;
            default:
                return -1;
            }
        }
        if (!peer_allowed(&ss)) {
            close(c);
            continue;
        }
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
            setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
            setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &wtv, sizeof wtv) < 0) {
            /* Unbounded reads are what this avoids: drop the connection instead. */
            close(c);
            continue;
        }
        return c;
    }
}
