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
/* Milliseconds since the Unix epoch. Can't fail. */
int64_t util_wall_ms(void);

/*
 * Parses s[0..len) as a decimal integer in [min, max]: digits only, no sign,
 * no spaces, at most 18 digits. Returns true and sets *out on success; false
 * and leaves *out alone otherwise.
 */
bool util_parse_int(const char *s, size_t len, int64_t min, int64_t max, int64_t *out);

#endif
