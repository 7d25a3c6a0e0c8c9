/*
 * listen.c - opening or inheriting the listening socket.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
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

static int open_unix(const char *path, int backlog, unsigned mode, struct chat_fail *f)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct stat st;
    mode_t old;
    int fd, rc;

    if (strlen(path) >= sizeof sa.sun_path)
        return chat_fail(f, CHAT_EBADREQ, "socket path %s is longer than %zu bytes",
                         path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return chat_fail(f, CHAT_EBADREQ, "%s exists and is not a socket", path);
        unlink(path);
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "socket: %s", strerror(errno));
    /* No window in which the socket exists with looser permissions. */
    old = umask(0777 & ~mode);
    rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (rc < 0 || chmod(path, mode) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return chat_fail(f, CHAT_EINTERNAL, "cannot listen on %s: %s", path, strerror(e));
    }
    return fd;
}

static int open_tcp(const char *addr, int backlog, struct chat_fail *f)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t sslen;
    char host[128];
    const char *colon = strrchr(addr, ':');
    int64_t port;
    int fd, one = 1;

    if (!colon || !util_parse_int(colon + 1, strlen(colon + 1), 1, 65535, &port) ||
        (size_t)(colon - addr) >= sizeof host)
        return chat_fail(f, CHAT_EBADREQ, "listen address %s is not PATH, HOST:PORT or :PORT", addr);
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    if (host[0] == '[') {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        size_t n = strlen(host);
        if (n < 2 || host[n - 1] != ']')
            return chat_fail(f, CHAT_EBADREQ, "bad IPv6 address in %s", addr);
        host[n - 1] = '\0';
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1)
            return chat_fail(f, CHAT_EBADREQ, "bad IPv6 address in %s", addr);
        sslen = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        if (host[0] == '\0')
            s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
            return chat_fail(f, CHAT_EBADREQ, "bad IPv4 address in %s (use a numeric address)", addr);
        sslen = sizeof *s4;
    }
    if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return chat_fail(f, CHAT_EINTERNAL, "socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return chat_fail(f, CHAT_EINTERNAL, "cannot listen on %s: %s", addr, strerror(e));
    }
    return fd;
}

int listen_open(const char *addr, int backlog, unsigned mode, struct chat_fail *f)
{
    return strchr(addr, '/') ? open_unix(addr, backlog, mode, f) : open_tcp(addr, backlog, f);
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
