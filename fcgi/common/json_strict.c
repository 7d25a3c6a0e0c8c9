/*
 * json_strict.c - the tokens json-c takes and RFC 8259 does not (see
 * json_strict.h). One pass, every step forward.
 */
#include <stdbool.h>
#include <string.h>

#include "json_strict.h"

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool word_char(char c)
{
    return digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '.';
}

/* The digits from s[i]: the index after them (i when there are none). */
static size_t digits(const char *s, size_t len, size_t i)
{
    while (i < len && digit(s[i]))
        i++;
    return i;
}

/*
 * The number at s[i] by RFC 8259's grammar,
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, not followed by a letter,
 * digit or point: the index after it, or 0 when it is not one.
 */
static size_t number(const char *s, size_t len, size_t i)
{
    size_t j;

    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0')
        i++;
    else if ((j = digits(s, len, i)) > i)
        i = j;
    else
        return 0;
    if (i < len && s[i] == '.') {
        if ((j = digits(s, len, i + 1)) == i + 1)
            return 0;
        i = j;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        if ((j = digits(s, len, i)) == i)
            return 0;
        i = j;
    }
    return i < len && word_char(s[i]) ? 0 : i;
}

/* The literal true, false or null at s[i]: the index after it, or 0. */
static size_t literal(const char *s, size_t len, size_t i)
{
    static const char *const words[] = { "true", "false", "null" };

    for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
        size_t n = strlen(words[w]);
        if (len - i >= n && memcmp(s + i, words[w], n) == 0 && (i + n == len || !word_char(s[i + n])))
            return i + n;
    }
    return 0;
}

int json_strict_check(const char *s, size_t len, struct chat_fail *f)
{
    size_t i = 0, next;

    while (i < len) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                if ((unsigned char)s[i] < 0x20)
                    return chat_fail(f, CHAT_EBADREQ,
                                     "not valid JSON: a control character in a string must be escaped");
                if (s[i] == '\\')
                    i++;           /* the escaped character: json-c checks the escape */
            }
            i++;
        } else if (strchr("{}[]:, \t\n\r", c) && c != '\0') {
            i++;
        } else if (c == '-' || digit(c)) {
            if (!(next = number(s, len, i)))
                return chat_fail(f, CHAT_EBADREQ, "not valid JSON: a number must be like -12.5e3");
            i = next;
        } else if ((next = literal(s, len, i))) {
            i = next;
        } else {
            return chat_fail(f, CHAT_EBADREQ, "not valid JSON: unexpected '%c' at byte %zu",
                             (unsigned char)c >= 0x20 && (unsigned char)c < 0x7f ? c : '?', i);
        }
    }
    return 0;
}
