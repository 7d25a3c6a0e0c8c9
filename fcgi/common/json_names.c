/*
 * json_names.c - the top-level names of a JSON object (see json_names.h).
 *
 * json-c keeps one member per name (the last) and has no hook to say that a
 * name came twice; SPEC section 5 makes a repeated top-level name a 400. So
 * json_names_check() reads the names of a text json-c has already accepted,
 * with json-c's own grammar: a name in double or single quotes (json-c takes
 * 'name' even in strict mode), a value skipped whole (strings first, then
 * brackets by depth), so that names inside nested values do not count. A
 * name is decoded as json-c decodes it (\uXXXX to UTF-8, a surrogate pair to
 * one character, a lone surrogate to U+FFFD, the short escapes) and names
 * are compared bytewise, after sorting. Every read is bounded by len and
 * every step moves forward, so any input ends, JSON or not.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_names.h"
#include "util.h"

struct json_name {
    const char *s;        /* decoded, in the buffer of json_names_check() */
    size_t len;
    size_t pos;           /* rank in the object */
};

static bool json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t len, size_t i)
{
    while (i < len && json_ws(s[i]))
        i++;
    return i;
}

/* The string whose quote is at s[i]: the index after its closing quote, or len. */
static size_t skip_string(const char *s, size_t len, size_t i)
{
    char q = s[i++];

    while (i < len && s[i] != q)
        i += s[i] == '\\' ? 2 : 1;
    return i < len ? i + 1 : len;
}

/* The value starting at s[i]: the index of the ',' or '}' that ends it, or len. */
static size_t skip_value(const char *s, size_t len, size_t i)
{
    size_t depth = 0;

    while (i < len) {
        char c = s[i];
        if (c == '"' || c == '\'') {
            i = skip_string(s, len, i);
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0)
                return i;
            depth--;
        } else if (c == ',' && depth == 0) {
            return i;
        }
        i++;
    }
    return len;
}

/* Four hex digits at s[i..i+4) into *cp; false when they are not there. */
static bool hex4(const char *s, size_t len, size_t i, unsigned *cp)
{
    unsigned v = 0;

    if (len < 4 || i > len - 4)
        return false;
    for (size_t k = 0; k < 4; k++) {
        int h = util_hexval(s[i + k]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    *cp = v;
    return true;
}

/* Writes code point cp (at most U+10FFFF) as UTF-8; returns the bytes written. */
static size_t put_utf8(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/*
 * Decodes the string whose quote is at s[i] into out, which has room for as
 * many bytes as the string takes in s (decoding never lengthens: 2 bytes of
 * escape give 1, 6 give at most 3, 12 give 4). Sets *n to the decoded
 * length; returns the index after the closing quote, or len.
 */
static size_t decode_string(const char *s, size_t len, size_t i, char *out, size_t *n)
{
    char q = s[i++];
    size_t o = 0;

    while (i < len && s[i] != q) {
        unsigned cp, lo;
        char e;

        if (s[i] != '\\') {
            out[o++] = s[i++];
            continue;
        }
        if (i + 1 >= len) {
            i = len;
            break;
        }
        e = s[i + 1];
        i += 2;
        switch (e) {
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'n': out[o++] = '\n'; break;
        case 'r': out[o++] = '\r'; break;
        case 't': out[o++] = '\t'; break;
        case 'u':
            if (!hex4(s, len, i, &cp)) {
                out[o++] = 'u';          /* not JSON: json-c refuses it */
                break;
            }
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 1 < len && s[i] == '\\' && s[i + 1] == 'u' &&
                hex4(s, len, i + 2, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xD800 && cp <= 0xDFFF) {
                cp = 0xFFFD;             /* a lone surrogate, as json-c reads it */
            }
            o += put_utf8(out + o, cp);
            break;
        default:                         /* '"', '\\', '/' (and what json-c refuses) */
            out[o++] = e;
            break;
        }
    }
    *n = o;
    return i < len ? i + 1 : len;
}

/* Orders names by length, then bytes, then rank, so equal names sit together, first one first. */
static int name_cmp(const void *a, const void *b)
{
    const struct json_name *x = a, *y = b;
    int c;

    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->len && (c = memcmp(x->s, y->s, x->len)) != 0)
        return c;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Writes name s[0..len) into out[0..size) for an error message: quotes,
 * backslashes and control characters escaped as in JSON, cut at a character
 * boundary with "..." when longer than fits. size is at least 8.
 */
static void name_for_msg(const char *s, size_t len, char *out, size_t size)
{
    size_t i, o = 0;

    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x20 ? 6 : c == '"' || c == '\\' ? 2 : 1;
        if (o + need > size - 4)
            break;
        if (c < 0x20) {
            snprintf(out + o, 7, "\\u%04x", c);
        } else if (need == 2) {
            out[o] = '\\';
            out[o + 1] = (char)c;
        } else {
            out[o] = (char)c;
        }
        o += need;
    }
    if (i < len) {
        /* Drop the bytes of a character cut short (each was copied as one byte). */
        while (i > 0 && o > 0 && ((unsigned char)s[i] & 0xC0) == 0x80) {
            i--;
            o--;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

int json_names_check(const char *s, size_t len, size_t *members,
                     const char *(*known)(const char *name, size_t len), struct chat_fail *f)
{
    struct json_name *names = NULL, *dup = NULL;
    size_t n = 0, cap = 0, used = 0, i;
    char *buf;
    int err = 0;

    *members = 0;
    i = skip_ws(s, len, 0);
    if (i >= len || s[i] != '{')
        return chat_fail(f, CHAT_EBADREQ, "JSON must be an object");
    if (!(buf = malloc(len)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    for (i++; i < len; ) {
        i = skip_ws(s, len, i);
        if (i >= len || s[i] == '}')
            break;
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] != '"' && s[i] != '\'') {
            err = chat_fail(f, CHAT_EBADREQ, "not valid JSON: a quoted member name is expected");
            goto out;
        }
        if (n == cap) {
            struct json_name *grown;
            cap = cap ? cap * 2 : 8;
            if (!(grown = realloc(names, cap * sizeof *names))) {
                err = chat_fail(f, CHAT_EUNAVAIL, "out of memory");
                goto out;
            }
            names = grown;
        }
        names[n].s = buf + used;
        names[n].pos = n;
        i = decode_string(s, len, i, buf + used, &names[n].len);
        used += names[n].len;
        n++;
        i = skip_ws(s, len, i);
        if (i < len && s[i] == ':')
            i++;
        i = skip_value(s, len, i);
    }
    *members = n;
    for (size_t k = 0; k < n; k++) {
        if (memchr(names[k].s, '\0', names[k].len)) {
            /* json-c cuts a name at its first NUL, so it could not tell "a\u0000b" from "a". */
            err = chat_fail(f, CHAT_EBADREQ, "a JSON key must not contain \\u0000");
            goto out;
        }
    }
    if (n > 1)
        qsort(names, n, sizeof *names, name_cmp);
    /* In a run of equal names the second is the first repeat; report the earliest. */
    for (size_t k = 1; k < n; k++) {
        if (names[k].len == names[k - 1].len &&
            (names[k].len == 0 || memcmp(names[k].s, names[k - 1].s, names[k].len) == 0) &&
            (!dup || names[k].pos < dup->pos))
            dup = &names[k];
    }
    if (dup) {
        const char *param = known ? known(dup->s, dup->len) : NULL;
        char shown[48];
        if (param) {
            err = chat_fail(f, CHAT_EBADREQ, "parameter %s is given more than once", param);
        } else {
            name_for_msg(dup->s, dup->len, shown, sizeof shown);
            err = chat_fail(f, CHAT_EBADREQ, "JSON key \"%s\" is given more than once "
                            "(no key may repeat, even one that is ignored)", shown);
        }
    }
out:
    free(names);
    free(buf);
    return err;
}

