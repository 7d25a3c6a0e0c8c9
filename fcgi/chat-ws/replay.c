/*
 * replay.c - stored messages for a new subscriber (see replay.h).
 *
 * The replay reads by cursor from the loop's own connection; the feed's
 * rows meanwhile reach only live subscribers. When a read finds no more,
 * the subscriber goes live with its cursor at the snapshot's largest id
 * (seen_id): every row up to it was replayed or is another room's, and
 * every later one comes from the feed, which drops what the cursor passed.
 */
#include <stdlib.h>

#include "log.h"
#include "render.h"
#include "replay.h"
#include "rooms.h"
#include "server.h"


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

void replay_start(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;

    if (c->live_only) {
        /* Start after the newest stored message. */
        if (store_fetch(srv.store, c->room, c->room_len, CHAT_INDEX_MAX, 1, 0, &page, &f) < 0) {
            replay_failed(c, &f);
            return;
        }
        go_live(c, page.seen_id);
        store_page_free(&page);
        return;
    }
    c->replaying = true;
    replay_step(c);
}

void replay_step(struct conn *c)
{
    struct store_page page;
    struct chat_fail f;

    if (c->tail > 0) {
        /* The last `tail` messages: replay from just before the first of them. */
        if (store_fetch(srv.store, c->room, c->room_len, 0, 1, c->tail, &page, &f) < 0) {
            replay_failed(c, &f);
            return;
        }
        c->cursor = page.n ? page.msgs[0].id - 1 : 0;
        c->tail = 0;
        store_page_free(&page);
    }
    if (store_fetch(srv.store, c->room, c->room_len, c->cursor, CHAT_REPLAY_CHUNK, 0, &page, &f) < 0) {
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
        feed_msg_unref(m);
        c->cursor = page.msgs[i].id;
    }
    /* (A cursor ahead of the database, which was replaced, resyncs here too.) */
    if (!page.more)
        go_live(c, page.seen_id);
    store_page_free(&page);
    if (c->qlen)
        lws_callback_on_writable(c->wsi);
}
