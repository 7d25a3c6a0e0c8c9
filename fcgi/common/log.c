/*
 * log.c - timestamped, levelled log lines on stderr.
 *
 * Each line is written with one write(2) so that lines from several threads
 * never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level min_level = LOG_INFO;
static const char *prog_name = "chat";

void log_set_level(enum log_level level) { min_level = level; }
void log_set_name(const char *name) { prog_name = name; }

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    char line[1024];
    struct timespec now;
    struct tm tm;
    size_t n;
    va_list ap;
    int r;

    if (level < min_level)
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    r = snprintf(line + n, sizeof line - n, ".%03ldZ %s %s: ",
                 now.tv_nsec / 1000000, prog_name, names[level]);
    n += r > 0 ? (size_t)r : 0;
    va_start(ap, fmt);
    r = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    n += r > 0 ? (size_t)r : 0;
    if (n > sizeof line - 2)
        n = sizeof line - 2;
    line[n++] = '\n';
    if (write(STDERR_FILENO, line, n) < 0) {
        /* nowhere left to report it */
    }
}
