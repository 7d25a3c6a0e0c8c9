/*
 * prom.h - a /metrics page in Prometheus text format, as both programs
 * render theirs: a growing buffer that remembers running out of memory.
 */
#ifndef CHAT_PROM_H
#define CHAT_PROM_H

#include <stdbool.h>
#include <stddef.h>

struct prom {
    char *s;
    size_t len, cap;
    bool failed;              /* out of memory: prom_end gives NULL */
};

/* An empty page. Can't fail (a failure shows at prom_end). */
void prom_begin(struct prom *o);
/* Appends formatted text. */
void prom_put(struct prom *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends one metric without labels: its HELP and TYPE lines and its value. */
void prom_metric(struct prom *o, const char *name, const char *type, const char *help,
                 unsigned long long value);
/* The page (malloc'd, *len bytes), or NULL when memory ran out. */
char *prom_end(struct prom *o, size_t *len);

#endif
