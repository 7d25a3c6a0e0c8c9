/*
 * replay.h - a new subscriber's stored messages, read from the database in
 * chunks as its queue drains, then the hand-over to live delivery with no
 * gap and no duplicate. Event loop only.
 */
#ifndef CHAT_WS_REPLAY_H
#define CHAT_WS_REPLAY_H

#include "conn.h"

/*
 * A live-only subscriber's start fixed now, before its handshake is
 * answered: after the room's newest stored message, which makes it a
 * subscriber from that cursor. So a message that its client sends once the
 * answer came, by any route, comes after the start. When the read fails
 * the subscriber stays live-only, and replay_start tries again (and says
 * why it failed).
 */
void replay_fix_start(struct conn *c);
/* Starts a subscriber from its cursor, its tail, or (live only) the latest id. */
void replay_start(struct conn *c);
/* Queues the next chunk; once the room has no more, the subscriber is live. */
void replay_step(struct conn *c);

#endif
