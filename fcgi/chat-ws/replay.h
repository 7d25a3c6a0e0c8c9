/*
 * replay.h - a new subscriber's stored messages, read from the database in
 * chunks as its queue drains, then the hand-over to live delivery with no
 * gap and no duplicate. Event loop only.
 */
#ifndef CHAT_WS_REPLAY_H
#define CHAT_WS_REPLAY_H

#include "conn.h"

/* Starts a subscriber from its cursor, its tail, or (live only) the latest id. */
void replay_start(struct conn *c);
/* Queues the next chunk; once the room has no more, the subscriber is live. */
void replay_step(struct conn *c);

#endif
