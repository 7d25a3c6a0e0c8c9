/*
 * hold.h - the parking lot of long-polls, on the process's change watcher.
 *
 * A /get/msg request that must wait is parked here: its connection stays
 * open (its libfcgi request is freed: the waiter keeps what the answer
 * needs) and no thread waits on it. The watcher (common/watch.h) listens
 * while requests are parked, and on its thread the hold
 *   - takes the waiters of the rooms each batch of new rows names, reads
 *     each room's answer once per distinct cursor, renders it once and
 *     writes it to every parked request of that cursor;
 *   - answers requests whose wait expired with an empty page;
 *   - releases requests whose client went away (nginx closed the socket).
 */
#ifndef CHAT_HOLD_H
#define CHAT_HOLD_H

#include <stddef.h>
#include <stdint.h>

#include <fcgiapp.h>

#include "params.h"
#include "store.h"

struct hold;

struct hold_opts {
    struct store_opts store;   /* the watcher's own connection */
    size_t max_held;           /* parked requests beyond this are refused */
    int probe_ms;              /* interval of change probes while requests wait */
};

/* Starts the watcher thread. Returns 0 and sets *out, or a code with *f set. */
int hold_start(const struct hold_opts *o, struct hold **out, struct chat_fail *f);

/*
 * Answers every parked request as if its wait had expired, stops the
 * watcher and frees everything. hold_stop(NULL) is a no-op.
 */
void hold_stop(struct hold *h);

/*
 * Parks req until a message with id > g->index arrives in g->room (or, for
 * a tail request, any message) or g->wait seconds pass. conn is the id of
 * the connection req came on (never reused; 0 when unknown), so that a
 * kept connection parked again is not registered again. seen_id is the
 * largest message id of the snapshot in which the caller found nothing to
 * return. Returns 0 when parked (req is freed then: the hold keeps only its
 * connection, and answers on it with reply_raw), or CHAT_EUNAVAIL
 * with *f set when max_held requests are parked already or the process is
 * stopping (the caller still owns req).
 */
int hold_park(struct hold *h, FCGX_Request *req, uint64_t conn, const struct get_args *g,
              int64_t seen_id, struct chat_fail *f);

/*
 * Parks req without reading the store when the hold knows the room's
 * latest id among the rows the watcher handed over. When it is g->index
 * (the usual re-poll, with the max_index of the last answer), every later
 * row is handed to it as to one parked by hold_park. When it is beyond
 * g->index (a re-poll behind a fan-out still under way), the watcher
 * thread answers it, with one read and one rendering for all the requests
 * at the same cursor. Returns 0 when parked (req is freed, as by
 * hold_park), 1 when the hold does not know or cannot take it (tail, no
 * wait, a room without a row handed over since start, a cursor ahead of
 * the room, a full hold behind: read, then hold_park or answer), or
 * CHAT_EUNAVAIL with *f set as hold_park.
 */
int hold_try_park(struct hold *h, FCGX_Request *req, uint64_t conn, const struct get_args *g,
                  struct chat_fail *f);

/*
 * Whether a read of (index, tail) found nothing to answer yet, so a
 * long-poll waits: an empty page, unless the cursor is ahead of the room
 * (then it is answered at once, with the room's latest id, to resync).
 */
static inline bool hold_page_waits(const struct store_page *page, int64_t index, int tail)
{
    return page->n == 0 && (tail > 0 || index <= page->max_index);
}

/* Tells the watcher that this process committed messages: probe now if requests wait. */
void hold_kick(struct hold *h);

/* Requests parked now (waiting, or taken by the watcher to be answered). */
size_t hold_count(struct hold *h);
/* Change probes made since start. */
int64_t hold_probes(struct hold *h);

/*
 * Tests only; NULL otherwise. When set, the watcher calls it after a
 * fan-out that left waiters with nothing new, before they are back in the
 * table (they are in flight), without holding any lock of the hold.
 */
extern void (*hold_test_hook)(struct hold *h);

#endif
