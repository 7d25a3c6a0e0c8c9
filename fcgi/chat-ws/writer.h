/*
 * writer.h - stores the messages chat-ws clients send, off the event loop.
 *
 * The event loop submits a validated message and goes on; one writer thread
 * commits it (waiting for a busy database as long as the busy timeout, which
 * never stalls the loop) and, when the client must hear back (a repeated
 * cid, a refusal), queues a result and wakes the loop. A stored message
 * reaches its sender like everyone else: through the feed.
 */
#ifndef CHAT_WRITER_H
#define CHAT_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "feed.h"
#include "store.h"
#include "valid.h"

struct writer;

/* What the sender of a message must be told. */
struct writer_result {
    uint64_t conn;            /* the submitting connection's id */
    int64_t id;               /* first id of a repeated cid */
    struct chat_fail fail;    /* code 0 for a duplicate, else the refusal */
};

struct writer_opts {
    struct store_opts store;
    struct feed *feed;        /* kicked after each commit */
    void (*wake)(void *ctx);  /* called from the writer thread when results wait */
    void *wake_ctx;
};

int writer_start(const struct writer_opts *o, struct writer **out, struct chat_fail *f);
/* Stores what was submitted already, then stops. writer_stop(NULL) is a no-op. */
void writer_stop(struct writer *w);

/*
 * Queues a copy of a validated message from connection conn. Returns 0, or
 * CHAT_EUNAVAIL with *f set when CHAT_WRITER_QUEUE_MAX messages wait already.
 */
int writer_submit(struct writer *w, uint64_t conn, const struct valid_send *m, struct chat_fail *f);

/* Moves the results into a malloc'd array the caller frees. */
void writer_take(struct writer *w, struct writer_result **out, size_t *n);

#endif
