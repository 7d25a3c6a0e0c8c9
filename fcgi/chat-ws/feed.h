/*
 * feed.h - chat-ws's consumer of the change watcher (common/watch.h): new
 * rows, read once and rendered once.
 *
 * While anyone listens, each new row from any writer is rendered once as a
 * message object and queued for the event loop, which is woken through the
 * wake callback and collects the rows with feed_take(). The frames are
 * shared by every connection that sends them (reference counts).
 */
#ifndef CHAT_FEED_H
#define CHAT_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat_limits.h"
#include "store.h"

/* Room in front of every frame for the WebSocket library's header (LWS_PRE). */
#define FEED_HEADROOM 32

/*
 * One frame to send: a rendered message (id > 0), or (id 0) a reply to one
 * client: a JSON frame for a WebSocket, event-stream text as it goes out
 * for a server-sent events stream (sse.c).
 */
struct feed_msg {
    unsigned refs;            /* owners; touched by the event loop only */
    int64_t id;               /* message id, or 0 for a reply frame */
    size_t room_len;
    char room[CHAT_NAME_MAX + 1];
    unsigned char *sse;       /* a message as an event ("id: N\ndata: JSON\n\n"), with
                                 FEED_HEADROOM bytes in front: made by sse.c on the event
                                 loop the first time a stream sends it, shared by all */
    size_t sse_len;
    size_t len;               /* bytes of JSON after the headroom */
    unsigned char buf[];      /* FEED_HEADROOM bytes, then the JSON */
};

/* A frame holding json[0..len), one reference. NULL when out of memory. */
struct feed_msg *feed_msg_new(const char *json, size_t len);
/* Drops one reference; frees at zero (with its event). feed_msg_unref(NULL) is a no-op. */
void feed_msg_unref(struct feed_msg *m);

struct feed;

struct feed_opts {
    struct store_opts store;
    int probe_ms;
    void (*wake)(void *ctx);  /* called from the feed thread when rows are queued */
    void *wake_ctx;
};

/* Starts the feed thread. Returns 0 and sets *out, or a code with *f set. */
int feed_start(const struct feed_opts *o, struct feed **out, struct chat_fail *f);
/* Stops the thread and frees the feed and the frames still queued. */
void feed_stop(struct feed *fd);

/*
 * Moves the queued frames, oldest first, into a malloc'd array (*out, *n);
 * the caller owns the array and one reference to each frame.
 */
void feed_take(struct feed *fd, struct feed_msg ***out, size_t *n);

/* Probe now: this process stored a message. */
void feed_kick(struct feed *fd);
/* Whether anyone listens: while nobody does, the feed does not probe. */
void feed_set_listening(struct feed *fd, bool listening);

#endif
