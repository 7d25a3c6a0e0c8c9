/*
 * slot.h - who owns a connection of chat-fcgi's workers: one atomic word per
 * descriptor number, its state and a sequence number that every change
 * bumps, so a descriptor number is never mistaken for a later connection
 * that got it (workers.h says how the states go).
 */
#ifndef CHAT_FCGI_SLOT_H
#define CHAT_FCGI_SLOT_H

#include <stdatomic.h>
#include <stdint.h>

/* The states of a connection's slot (the low byte of its word). */
enum conn_state {
    C_FREE,     /* no connection of ours has this number */
    C_FRESH,    /* accepted, in the set until its first request comes */
    C_IDLE,     /* kept between requests, in the set */
    C_SWEPT,    /* silent too long: shut down, in the set until a worker closes it */
    C_BUSY      /* one thread owns it: reading, answering, or parked in the hold */
};

struct slot {
    _Atomic uint64_t word;     /* state | sequence << 8 */
    _Atomic int64_t since;     /* util_now_ms() when it became FRESH or IDLE */
    uint64_t conn;             /* the connection's id, from 1, never reused: set when accepted */
};

/* The word after old with state s: the sequence number moves on. */
static inline uint64_t word_make(uint64_t old, enum conn_state s)
{
    return ((old >> 8) + 1) << 8 | (uint64_t)s;
}

static inline enum conn_state word_state(uint64_t word)
{
    return (enum conn_state)(word & 0xff);
}

#endif
