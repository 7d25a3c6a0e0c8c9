/*
 * log.c - timestamped, levelled log lines on stderr.
 *
 * Each line is written with one write(2) so that lines from several threads
 * never interleave, and with any password masked (log_mask).
 */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

static enum log_level min_level = LOG_INFO;
static const char *prog_name = "chat";

void log_set_level(enum log_level level) { min_level = level; }
void log_set_name(const char *name) { prog_name = name; }

#define MASK "***"
#define SECRETS_MAX 4

/* Passwords seen in a --db, masked wherever they show (libpq echoes some bad ones bare). */
static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;
static char secrets[SECRETS_MAX][128];
static size_t secrets_n;

/* Length of a password= value at s: quoted ('...', \' and \\ escaped) or up to a separator. */
static size_t value_len(const char *s, size_t n)
{
    size_t i = 0;

    if (n > 0 && s[0] == '\'') {
        for (i = 1; i < n && s[i] != '\''; i++)
            if (s[i] == '\\' && i + 1 < n)
                i++;
        return i < n ? i + 1 : n;
    }
    while (i < n && !strchr("&\"' \t\r\n", s[i]))
        i++;
    return i;
}

/*
 * Whether a password starts after in[i]'s key: sets *keep (the bytes kept
 * before it: "://user:" or "password=") and *len (the password's).
 */
static bool password_at(const char *in, size_t n, size_t i, size_t *keep, size_t *len)
{
    *keep = *len = 0;
    if (i + 3 <= n && memcmp(in + i, "://", 3) == 0) {
        /* scheme://user:password@host, the credentials ending at the first '@' as in libpq. */
        size_t a = i + 3, at = a;
        while (at < n && !strchr("@/ \t\r\n", in[at]))
            at++;
        const char *colon = at < n && in[at] == '@' ? memchr(in + a, ':', at - a) : NULL;
        if (colon) {
            *keep = (size_t)(colon - in) + 1 - i;
            *len = at - (i + *keep);
        }
    } else if (i + 8 <= n && strncasecmp(in + i, "password", 8) == 0 &&
               (i == 0 || !(isalnum((unsigned char)in[i - 1]) || in[i - 1] == '_'))) {
        /* password=value, password = 'value' */
        size_t j = i + 8;
        while (j < n && (in[j] == ' ' || in[j] == '\t'))
            j++;
        if (j < n && in[j] == '=') {
            j++;
            while (j < n && (in[j] == ' ' || in[j] == '\t'))
                j++;
            *keep = j - i;
            *len = value_len(in + j, n - j);
        }
    }
    return *len > 0;
}

void log_secrets_of(const char *db)
{
    size_t n = strlen(db), keep, len;

    pthread_mutex_lock(&secrets_mu);
    for (size_t i = 0; i < n; i++) {
        if (!password_at(db, n, i, &keep, &len))
            continue;
        const char *p = db + i + keep;
        bool known = len < 4 || len >= sizeof secrets[0];   /* short ones: in context only */
        for (size_t k = 0; k < secrets_n && !known; k++)
            known = strlen(secrets[k]) == len && memcmp(secrets[k], p, len) == 0;
        if (!known && secrets_n < SECRETS_MAX) {
            memcpy(secrets[secrets_n], p, len);
            secrets[secrets_n++][len] = '\0';
        }
        i += keep + len - 1;
    }
    pthread_mutex_unlock(&secrets_mu);
}

/* The length of a known password at in[i], or 0. Called with secrets_mu held. */
static size_t secret_at(const char *in, size_t n, size_t i)
{
    for (size_t k = 0; k < secrets_n; k++) {
        size_t len = strlen(secrets[k]);
        if (len <= n - i && memcmp(in + i, secrets[k], len) == 0)
            return len;
    }
    return 0;
}

size_t log_mask(const char *in, size_t n, char *out, size_t size)
{
    size_t o = 0, i = 0, keep, len;

#define PUT(c) do { if (o + 1 < size) out[o++] = (c); } while (0)
    if (size == 0)
        return 0;
    pthread_mutex_lock(&secrets_mu);
    while (i < n) {
        if (!password_at(in, n, i, &keep, &len) && (keep = 0, len = secret_at(in, n, i)) == 0) {
            PUT(in[i]);
            i++;
            continue;
        }
        for (size_t k = 0; k < keep; k++)
            PUT(in[i + k]);
        for (const char *m = MASK; *m; m++)
            PUT(*m);
        i += keep + len;
    }
    pthread_mutex_unlock(&secrets_mu);
#undef PUT
    out[o] = '\0';
    return o;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    char line[1024], masked[1024];
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
    if (n > sizeof line - 1)
        n = sizeof line - 1;
    n = log_mask(line, n, masked, sizeof masked - 1);
    masked[n++] = '\n';
    if (write(STDERR_FILENO, masked, n) < 0) {
        /* nowhere left to report it */
    }
}
