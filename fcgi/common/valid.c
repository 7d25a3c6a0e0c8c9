/*
 * valid.c - UTF-8 and field rules for messages (SPEC section 2).
 */
#include <string.h>

#include "chat_limits.h"
#include "valid.h"

/*
 * Decodes one UTF-8 sequence at s[0..len). Returns its length and sets *cp,
 * or returns 0 for an ill-formed sequence.
 */
static size_t utf8_decode(const unsigned char *s, size_t len, unsigned *cp)
{
    unsigned c = s[0], min;
    size_t n;

    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xC2) return 0;
    if (c < 0xE0) { n = 2; c &= 0x1F; min = 0x80; }
    else if (c < 0xF0) { n = 3; c &= 0x0F; min = 0x800; }
    else if (c < 0xF5) { n = 4; c &= 0x07; min = 0x10000; }
    else return 0;
    if (len < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return n;
}

size_t valid_utf8_char(const char *s, size_t len)
{
    unsigned cp;
    return len ? utf8_decode((const unsigned char *)s, len, &cp) : 0;
}

bool valid_utf8(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned cp;

    for (size_t i = 0; i < len; ) {
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

int valid_chars(const char *what, const char *s, size_t len, struct chat_fail *f)
{
    const unsigned char *p = (const unsigned char *)s;
    unsigned cp;

    for (size_t i = 0; i < len; ) {
        size_t n = utf8_decode(p + i, len - i, &cp);
        if (n == 0)
            return chat_fail(f, CHAT_EBADREQ, "%s is not valid UTF-8", what);
        if (cp == 0)
            return chat_fail(f, CHAT_EBADREQ, "%s contains a NUL character", what);
        if ((cp < 0x20 && cp != '\t' && cp != '\n') || (cp >= 0x7F && cp <= 0x9F))
            return chat_fail(f, CHAT_EBADREQ,
                             "%s contains control character U+%04X (only tab and newline are allowed)",
                             what, cp);
        i += n;
    }
    return 0;
}

bool valid_name(const char *s, size_t len)
{
    if (len < 1 || len > CHAT_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

int valid_send(const struct valid_send *m, struct chat_fail *f)
{
    int err;

    if (!m->text)
        return chat_fail(f, CHAT_EBADREQ, "text is required");
    if (m->text_len > CHAT_TEXT_MAX)
        return chat_fail(f, CHAT_ETOOBIG, "text is %zu bytes, more than the %d allowed",
                         m->text_len, CHAT_TEXT_MAX);
    if (m->text_len == 0)
        return chat_fail(f, CHAT_EBADREQ, "text is empty");
    if ((err = valid_chars("text", m->text, m->text_len, f)) < 0)
        return err;
    if (m->user_len > CHAT_USER_MAX)
        return chat_fail(f, CHAT_EBADREQ, "user is %zu bytes, more than the %d allowed",
                         m->user_len, CHAT_USER_MAX);
    if ((err = valid_chars("user", m->user, m->user_len, f)) < 0)
        return err;
    if (!valid_name(m->room, m->room_len))
        return chat_fail(f, CHAT_EBADREQ, "room must match [A-Za-z0-9_.-]{1,%d}", CHAT_NAME_MAX);
    if (m->cid && !valid_name(m->cid, m->cid_len))
        return chat_fail(f, CHAT_EBADREQ, "cid must match [A-Za-z0-9_.-]{1,%d}", CHAT_NAME_MAX);
    return 0;
}

size_t valid_send_size(const struct valid_send *m)
{
    return m->text_len + m->user_len + m->room_len + m->cid_len + 4;
}

/* Copies len bytes and a NUL to *p, advances it and returns the copy. */
static const char *put(char **p, const char *s, size_t len)
{
    char *at = *p;
    if (len)
        memcpy(at, s, len);
    at[len] = '\0';
    *p += len + 1;
    return at;
}

void valid_send_copy(const struct valid_send *m, char *buf, struct valid_send *out)
{
    *out = *m;
    out->text = put(&buf, m->text, m->text_len);
    out->user = put(&buf, m->user, m->user_len);
    out->room = put(&buf, m->room, m->room_len);
    out->cid = m->cid ? put(&buf, m->cid, m->cid_len) : NULL;
}
