/*
 * retain.h - the retention policy of chat-fcgi (off unless configured):
 * messages older than an age, or beyond the last N of a room, are deleted
 * by a background thread in small batches, so writers never wait long.
 */
#ifndef CHAT_RETAIN_H
#define CHAT_RETAIN_H

#include <stdint.h>

#include "store.h"

struct retain;

struct retain_opts {
    struct store_opts store;
    int64_t max_age_ms;       /* 0: no limit by age */
    int per_room;             /* 0: no limit by count */
    int every_s;              /* seconds between passes */
};

/* Starts the thread; *out stays NULL when no policy is set. 0 or a code. */
int retain_start(const struct retain_opts *o, struct retain **out, struct chat_fail *f);
/* Stops the thread at its next batch. retain_stop(NULL) is a no-op. */
void retain_stop(struct retain *r);

/*
 * Parses a duration: digits and a unit s, m, h or d ("30d", "12h"). Returns
 * the milliseconds, or -1 when s is not one.
 */
int64_t retain_parse_age(const char *s);

#endif
