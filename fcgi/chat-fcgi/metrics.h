/*
 * metrics.h - counters of chat-fcgi, rendered in Prometheus text format at
 * /metrics. Every function is thread-safe and can't fail.
 */
#ifndef CHAT_METRICS_H
#define CHAT_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum metrics_route { MR_SEND, MR_GET, MR_HEALTHZ, MR_METRICS, MR_OTHER, MR_COUNT };

/* One answered request of a route with an HTTP status. */
void metrics_request(enum metrics_route route, int status);
/* One transaction of the group commit that stored n messages. */
void metrics_stored(size_t n);
/* One parked long-poll answered ms milliseconds after its message was stored. */
void metrics_wakeup(int64_t ms);

/*
 * Renders every metric, with the gauges given, into a malloc'd string
 * (*len bytes); NULL when out of memory.
 */
char *metrics_render(size_t held, int64_t probes, size_t *len);

#endif
