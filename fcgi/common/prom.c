/*
 * prom.c - Prometheus text pages (see prom.h).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "prom.h"

void prom_begin(struct prom *o)
{
    o->len = 0;
    o->cap = 4096;
    o->failed = !(o->s = malloc(o->cap));
    if (o->s)
        o->s[0] = '\0';
}

void prom_put(struct prom *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->s + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        char *ns = n < 0 ? NULL : realloc(o->s, o->cap * 2 + (size_t)n);
        if (!ns) {
            o->failed = true;
            return;
        }
        o->s = ns;
        o->cap = o->cap * 2 + (size_t)n;
    }
}

void prom_metric(struct prom *o, const char *name, const char *type, const char *help,
                 unsigned long long value)
{
    prom_put(o, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, value);
}

char *prom_end(struct prom *o, size_t *len)
{
    if (o->failed) {
        free(o->s);
        o->s = NULL;
        return NULL;
    }
    *len = o->len;
    return o->s;
}
