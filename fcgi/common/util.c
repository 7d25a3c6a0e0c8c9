/*
 * util.c - clocks, bounded number parsing and the chat_fail constructor.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chat.h"
#include "util.h"

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t util_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool util_parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *out)
{
    int64_t v = 0;
    bool over = false;

    if (len == 0)
        return false;
    /* By value, not by digit count: leading zeros are fine, and a value
     * past INT64_MAX is noted (and the rest still checked as digits). */
    for (size_t i = 0; i < len; i++) {
        int d = s[i] - '0';
        if (s[i] < '0' || s[i] > '9')
            return false;
        if (over || v > (INT64_MAX - d) / 10)
            over = true;
        else
            v = v * 10 + d;
    }
    if (over || v < min || v > max)
        return false;
    *out = v;
    return true;
}

int chat_fail(struct chat_fail *f, int code, const char *fmt, ...)
{
    va_list ap;

    f->code = code;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    return code;
}

char *util_put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

char *util_put_str(char *p, const char *s)
{
    return util_put(p, s, strlen(s));
}

char *util_put_int(char *p, int64_t v)
{
    char digits[20];
    size_t n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = digits[--n];
    return p;
}

int util_hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
