/*
 * log.h - one line per event worth knowing, to stderr, with a level.
 */
#ifndef CHAT_LOG_H
#define CHAT_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below this level are dropped; LOG_INFO unless set. */
void log_set_level(enum log_level level);
/* The program name written on every line. */
void log_set_name(const char *name);

/*
 * Copies in[0..n) to out (at most size - 1 bytes, NUL-terminated) with
 * every password replaced by "***": a URI's (scheme://user:PASSWORD@host)
 * and a connection string's or URI query's (password=PASSWORD), and any
 * password log_secrets_of has seen, wherever it shows. Returns the length
 * written. log_msg passes every line through it, so that a --db URI never
 * shows a password in a log, whatever echoes it.
 */
size_t log_mask(const char *in, size_t n, char *out, size_t size);
/* Notes the passwords of a --db (of 4 bytes or more), masked bare from now on. Any thread. */
void log_secrets_of(const char *db);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
