/*
 * metrics.c - request, message and wake-up counters in Prometheus format.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "prom.h"

static const char *const route_names[MR_COUNT] = {
    [MR_SEND] = "/send/msg", [MR_GET] = "/get/msg", [MR_HEALTHZ] = "/healthz",
    [MR_METRICS] = "/metrics", [MR_OTHER] = "other",
};
static const int statuses[] = { 200, 400, 403, 404, 405, 413, 415, 500, 503 };
#define NSTATUS (sizeof statuses / sizeof statuses[0])

/* Upper bounds of the wake-up latency buckets, in ms; the last is +Inf. */
static const int64_t bounds[] = { 1, 2, 5, 10, 20, 50, 100, 250, 500, 1000, 5000 };
#define NBOUNDS (sizeof bounds / sizeof bounds[0])

static atomic_ullong requests[MR_COUNT][NSTATUS];
static atomic_ullong stored, commits;
static atomic_ullong wake_buckets[NBOUNDS + 1];
static atomic_ullong wake_count, wake_sum_ms;

void metrics_request(enum metrics_route route, int status)
{
    size_t i;

    for (i = 0; i < NSTATUS - 1 && statuses[i] != status; i++)
        ;
    if (statuses[i] != status)
        i = NSTATUS - 2;   /* anything unlisted counts as a 500 */
    atomic_fetch_add(&requests[route][i], 1);
}

void metrics_stored(size_t n)
{
    atomic_fetch_add(&stored, n);
    atomic_fetch_add(&commits, 1);
}

void metrics_wakeup(int64_t ms)
{
    size_t b;

    if (ms < 0)
        ms = 0;
    for (b = 0; b < NBOUNDS && ms > bounds[b]; b++)
        ;
    atomic_fetch_add(&wake_buckets[b], 1);
    atomic_fetch_add(&wake_count, 1);
    atomic_fetch_add(&wake_sum_ms, (unsigned long long)ms);
}

char *metrics_render(size_t held, int64_t probes, size_t *len)
{
    struct prom o;
    unsigned long long cum = 0;

    prom_begin(&o);
    prom_put(&o, "# HELP chat_requests_total Requests answered by chat-fcgi, by route and status.\n"
            "# TYPE chat_requests_total counter\n");
    for (int r = 0; r < MR_COUNT; r++)
        for (size_t i = 0; i < NSTATUS; i++)
            prom_put(&o, "chat_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                route_names[r], statuses[i], atomic_load(&requests[r][i]));
    prom_put(&o, "# HELP chat_messages_stored_total Messages stored through this process.\n"
            "# TYPE chat_messages_stored_total counter\n"
            "chat_messages_stored_total %llu\n", atomic_load(&stored));
    prom_put(&o, "# HELP chat_commits_total Transactions that stored them: sends that arrive "
            "together share one.\n"
            "# TYPE chat_commits_total counter\n"
            "chat_commits_total %llu\n", atomic_load(&commits));
    prom_put(&o, "# HELP chat_held_longpolls Long-polls parked now.\n"
            "# TYPE chat_held_longpolls gauge\n"
            "chat_held_longpolls %zu\n", held);
    prom_put(&o, "# HELP chat_change_probes_total Change probes (PRAGMA data_version) made.\n"
            "# TYPE chat_change_probes_total counter\n"
            "chat_change_probes_total %lld\n", (long long)probes);
    prom_put(&o, "# HELP chat_wakeup_seconds From a message's storing to a parked long-poll's answer.\n"
            "# TYPE chat_wakeup_seconds histogram\n");
    for (size_t b = 0; b < NBOUNDS; b++) {
        cum += atomic_load(&wake_buckets[b]);
        prom_put(&o, "chat_wakeup_seconds_bucket{le=\"%g\"} %llu\n", (double)bounds[b] / 1000, cum);
    }
    cum += atomic_load(&wake_buckets[NBOUNDS]);
    unsigned long long sum_ms = atomic_load(&wake_sum_ms);
    prom_put(&o, "chat_wakeup_seconds_bucket{le=\"+Inf\"} %llu\n"
            "chat_wakeup_seconds_sum %llu.%03llu\n"
            "chat_wakeup_seconds_count %llu\n",
        cum, sum_ms / 1000, sum_ms % 1000, atomic_load(&wake_count));
    return prom_end(&o, len);
}
