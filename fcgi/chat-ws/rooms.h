/*
 * rooms.h - the index of live subscribers by room, shared by every push
 * transport: a new row reaches the subscribers of its room without a look
 * at anyone else's. Event loop only.
 */
#ifndef CHAT_WS_ROOMS_H
#define CHAT_WS_ROOMS_H

#include <stddef.h>

#include "conn.h"
#include "feed.h"

/* A subscriber goes live: new rows of its room after its cursor reach it. */
void rooms_insert(struct conn *c);
/* Takes it out of the index, if it is in. */
void rooms_remove(struct conn *c);
/*
 * Queues each of msgs[0..n) (oldest first) to the live subscribers of its
 * room whose cursor is behind it; a subscriber whose queue is full is
 * closed as too slow.
 */
void rooms_deliver(struct feed_msg **msgs, size_t n);

#endif
