/*
 * listen.h - the listening socket of a server: a unix socket path, a TCP
 * address, or one inherited from spawn-fcgi (fd 0) or systemd (LISTEN_FDS);
 * and accepting connections on it with bounded reads.
 */
#ifndef CHAT_LISTEN_H
#define CHAT_LISTEN_H

#include <stdbool.h>

#include "chat.h"

/*
 * Opens a listening socket on addr: a path (listen_is_path) is a unix
 * socket (a stale socket file is replaced, one in use refused, as
 * listen_unix_clear says; the file gets mode `mode` and, when gid >= 0,
 * that group); otherwise HOST:PORT or :PORT on TCP (IPv4, or [v6]:PORT).
 * The socket is non-blocking (accept waits in the caller's epoll). Returns
 * the fd, or a negative code with *f set.
 */
int listen_open(const char *addr, int backlog, unsigned mode, long gid, struct chat_fail *f);

/* Whether a --listen address is a unix socket's path: it contains a '/'. */
bool listen_is_path(const char *addr);

/*
 * The two halves of making a unix socket at path, for a server that binds
 * it itself (chat-ws: libwebsockets does). Before the bind: refuses a path
 * too long for a socket, a file there that is not a socket, or a socket
 * that another process listens on (a connect succeeds), and removes a
 * stale socket (refused). After it: mode `mode`, and group gid when gid >= 0.
 * Return 0, or a negative code with *f set.
 */
int listen_unix_clear(const char *path, struct chat_fail *f);
int listen_unix_own(const char *path, unsigned mode, long gid, struct chat_fail *f);

/*
 * Splits a TCP address, HOST:PORT or :PORT, into host (an empty one is
 * 127.0.0.1; [v6] loses its brackets and sets *v6) and port. Returns 0, or
 * CHAT_EBADREQ with *f set.
 */
int listen_split(const char *addr, char *host, size_t host_size, int *port, bool *v6,
                 struct chat_fail *f);

/*
 * The listening socket this process inherited: systemd's first socket
 * (sd_listen_fds(): fd 3, when LISTEN_PID is ours; the LISTEN_* variables
 * are then unset) or fd 0 when it is a listening socket (spawn-fcgi).
 * Returns the fd, or -1 when there is none. Such a socket is not ours: it
 * outlives this process, which must not shut it down.
 */
int listen_inherited(void);

/*
 * Accepts the next connection on the listening socket fd: close-on-exec,
 * blocking, TCP_NODELAY on TCP; every blocking read on it gives up after
 * read_timeout_ms, every write after write_timeout_ms. Connections that
 * fail before they are accepted, and IPv4 peers outside
 * FCGI_WEB_SERVER_ADDRS when it is set, are skipped. A blocking fd (an
 * inherited one may be) waits for a connection; a non-blocking one does
 * not. Returns the connection, or -1 with errno set: EAGAIN when a
 * non-blocking fd has none waiting, EINTR when a signal interrupted the
 * wait, otherwise an error of accept() (EMFILE, ENOMEM, EINVAL once the
 * socket is shut down...).
 */
int listen_accept(int fd, int read_timeout_ms, int write_timeout_ms);

#endif
