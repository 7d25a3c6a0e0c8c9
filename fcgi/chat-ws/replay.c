/*
 * replay.c - stored messages for a new subscriber (see replay.h).
 *
 * The replay reads by cursor from the loop's own connection; the feed's
 * rows meanwhile reach only live subscribers. When a read finds no more,
 * the subscriber goes live with its cursor at the snapshot's largest id
 * (seen_id): every row up to it was replayed or is another room's, and
 * every later one comes from the feed, which drops what the cursor passed.
 * A replay is read only as its queue drains, so it never overflows; it
 * goes live when a read finds no more and leaves half the queue free.
 *
 * An event stream first says where it starts (SPEC section 8's ready
 * event): the cursor, once the first read has placed it, and the room's
 * latest id; so its first read is also the one that knows whether the
 * cursor was ahead of the room and whether retention took messages after it.
 */
#include <stdlib.h>

#include "log.h"
#include "render.h"
#include "replay.h"
#include "rooms.h"
#include "server.h"
#include "sse.h"


static void go_live(struct conn *c, int64_t seen_id)
{
    c->replaying = false;
    c->cursor = seen_id;
    rooms_insert(c);
}

static void replay_failed(struct conn *c, const struct chat_fail *f)
{
    log_warn("replay of room %s failed: %s", c->room, f->msg);
    conn_close_later(c, CLOSE_TRY_AGAIN_LATER, "database unavailable: retry");
}

/* The room's latest id (page.max_index of a read after the largest cursor). */
static int room_latest(struct conn *c, struct store_page *page, struct chat_fail *f)
{
    return store_fetch(srv.store, c->room, c->room_len, CHAT_INDEX_MAX, 1, 0, page, f);
}

void replay_fix_start(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;

    if (!c->live_only || room_latest(c, &page, &f) < 0)
        return;
    c->live_only = false;
    c->cursor = page.seen_id;
    store_page_free(&page);
}

void replay_start(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;

    if (c->live_only) {
        /* Start after the newest stored message. */
        if (room_latest(c, &page, &f) < 0) {
            replay_failed(c, &f);
            return;
        }
        if (c->announce) {
            c->announce = false;
            sse_ready(c, page.max_index, page.max_index, false);
        }
        go_live(c, page.seen_id);
        store_page_free(&page);
        return;
    }
    if (c->tail > 0) {
        /* The last `tail` messages: replay from just before the first of them. */
        if (store_fetch(srv.store, c->room, c->room_len, 0, 1, c->tail, &page, &f) < 0) {
            replay_failed(c, &f);
            return;
        }
        c->cursor = page.n ? page.msgs[0].id - 1 : page.max_index;
        c->tail = 0;
        store_page_free(&page);
    }
    c->replaying = true;
    replay_step(c);
}

/* Queues a stream's ready event, from the first read after its cursor. */
static int announce(struct conn *c, const struct store_page *page, struct chat_fail *f)
{
    int64_t from = c->cursor, latest = page->max_index;
    struct store_page last;

    c->announce = false;
    if (page->more) {
        /* max_index is the chunk's last row here: ask for the room's latest. */
        if (room_latest(c, &last, f) < 0)
            return f->code;
        latest = last.max_index;
        store_page_free(&last);
    } else if (page->n == 0 && from > latest) {
        from = latest;     /* ahead of the room (a replaced database): from its latest */
    }
    sse_ready(c, from, latest, page->pruned);
    return 0;
}

void replay_step(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;
    /* A chunk fits in the queue, beside a stream's ready event when it is due. */
    unsigned room = srv.cfg.max_queue - c->qlen - (c->announce ? 1 : 0);
    int limit = room < CHAT_REPLAY_CHUNK ? (int)room : CHAT_REPLAY_CHUNK;

    if (limit < 1) {
        conn_want_write(c);                /* after the queue drains */
        return;
    }
    if (store_fetch(srv.store, c->room, c->room_len, c->cursor, limit, 0, &page, &f) < 0) {
        replay_failed(c, &f);
        return;
    }
    if (c->announce && announce(c, &page, &f) < 0) {
        store_page_free(&page);
        replay_failed(c, &f);
        return;
    }
    for (size_t i = 0; i < page.n; i++) {
        size_t len;
        char *json = render_message(&page.msgs[i], &len);
        struct feed_msg *m = json ? feed_msg_new(json, len) : NULL;
        free(json);
        if (!m || !conn_push(c, m)) {
            feed_msg_unref(m);
            store_page_free(&page);
            conn_close_later(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow: resume from your last id");
            return;
        }
        m->id = page.msgs[i].id;           /* an event stream writes it as the event's id */
        feed_msg_unref(m);
        c->cursor = page.msgs[i].id;
    }
    /* Live only with half the queue free: a subscriber that keeps up is not
     * ended for the replay's own last chunk. Until then the next step reads
     * again once the queue drains. (A cursor ahead of the database, which
     * was replaced, resyncs here too: that read finds nothing.) */
    if (!page.more && c->qlen <= srv.cfg.max_queue / 2)
        go_live(c, page.seen_id);
    store_page_free(&page);
    if (c->qlen)
        conn_want_write(c);
}
