/*
 * json_strict.h - the tokens of a JSON body that json-c takes even in strict
 * mode and RFC 8259 does not (SPEC section 5: bad JSON is a 400).
 */
#ifndef CHAT_JSON_STRICT_H
#define CHAT_JSON_STRICT_H

#include <stddef.h>

#include "chat.h"

/*
 * Reads the tokens of s[0..len): returns 0 when every one outside strings
 * is a number of RFC 8259's grammar, true, false, null, a structural
 * character or white space, and no string holds a raw control character
 * (below U+0020); otherwise CHAT_EBADREQ with the reason in *f (NaN,
 * Infinity, 1., a raw newline in a string, a single-quoted string). The
 * structure, the escapes and UTF-8 are json-c's to check. Reads nothing
 * outside s[0..len).
 */
int json_strict_check(const char *s, size_t len, struct chat_fail *f);

#endif
