/*
 * listen.h - the listening socket of a server: a unix socket path, a TCP
 * address, or one inherited from spawn-fcgi (fd 0) or systemd (LISTEN_FDS).
 */
#ifndef CHAT_LISTEN_H
#define CHAT_LISTEN_H

#include <stdbool.h>

#include "chat.h"

/*
 * Opens a listening socket on addr: a path containing '/' is a unix socket
 * (a stale socket file is replaced; the file gets mode `mode`); otherwise
 * HOST:PORT or :PORT on TCP (IPv4, or [v6]:PORT). Returns the fd, or a
 * negative code with *f set.
 */
int listen_open(const char *addr, int backlog, unsigned mode, struct chat_fail *f);

/*
 * The listening socket this process inherited: systemd's first socket
 * (sd_listen_fds(): fd 3, when LISTEN_PID is ours; the LISTEN_* variables
 * are then unset) or fd 0 when it is a listening socket (spawn-fcgi).
 * Returns the fd, or -1 when there is none.
 */
int listen_inherited(void);

#endif
