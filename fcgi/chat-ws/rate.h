/*
 * rate.h - a token bucket: how many messages one connection may send.
 */
#ifndef CHAT_WS_RATE_H
#define CHAT_WS_RATE_H

#include <stdbool.h>
#include <stdint.h>

/*
 * per_sec messages a second, in bursts of twice as many: true when one more
 * may go through now (and takes its token). *tokens and *at (0 at first)
 * are the bucket's state; now is util_now_ms(). Can't fail.
 */
static inline bool rate_take(double *tokens, int64_t *at, int per_sec, int64_t now)
{
    double burst = 2.0 * per_sec;

    if (*at == 0)
        *tokens = burst;
    else
        *tokens += (double)(now - *at) * per_sec / 1000.0;
    if (*tokens > burst)
        *tokens = burst;
    *at = now;
    if (*tokens < 1.0)
        return false;
    *tokens -= 1.0;
    return true;
}

#endif
