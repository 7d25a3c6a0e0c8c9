/*
 * util.h - small helpers with no better home: clocks and bounded numbers.
 */
#ifndef CHAT_UTIL_H
#define CHAT_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Milliseconds on the monotonic clock. Can't fail. */
int64_t util_now_ms(void);
/* Microseconds on the same clock. Can't fail. */
int64_t util_now_us(void);
/* Milliseconds since the Unix epoch. Can't fail. */
int64_t util_wall_ms(void);

/*
 * Parses s[0..len) as a decimal integer in [min, max]: one or more digits,
 * no sign, no spaces; leading zeros allowed, any number of digits (a value
 * is bounded by what it is, never by its length; one past INT64_MAX is
 * refused, not wrapped). Returns true and sets *out on success; false and
 * leaves *out alone otherwise.
 */
bool util_parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);

/* The value of a hex digit, or -1. Can't fail. */
int util_hexval(char c);

/*
 * Appenders for the hot answers, where snprintf's format parsing costs
 * more than the rest of the formatting: each copies to p and returns the
 * end of what it wrote. The caller sizes the buffer (an int64 takes at
 * most 20 bytes).
 */
char *util_put(char *p, const char *s, size_t len);
char *util_put_str(char *p, const char *s);
char *util_put_int(char *p, int64_t v);

#endif
