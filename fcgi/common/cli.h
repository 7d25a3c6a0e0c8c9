/*
 * cli.h - start-up helpers shared by chat-fcgi and chat-ws: bounded flag
 * values and process limits. Only start-up may exit, so these may.
 */
#ifndef CHAT_CLI_H
#define CHAT_CLI_H

#include <stdbool.h>

/* The program name in messages about bad flags. */
void cli_set_name(const char *name);

/* The value of a numeric flag in [min, max]; exits 2 with a message otherwise. */
int cli_int(const char *flag, const char *s, int min, int max);

/* --sync normal|full: true for full; exits 2 with a message otherwise. */
bool cli_sync_full(const char *s);

/*
 * Raises the soft limit of open descriptors to the hard one. Returns the
 * limit in force, or -1 when there is none (or it cannot be read).
 */
long cli_raise_fd_limit(void);

#endif
