/*
 * watch.h - the change watcher: what was stored after id N, by any writer.
 *
 * One watcher thread per process learns of new rows and hands them to one
 * consumer (chat-fcgi's parking lot of long-polls, chat-ws's feed of push
 * connections). Waiters never probe the database themselves.
 *
 * While the consumer listens, the watcher probes the store's change
 * counter (PRAGMA data_version on SQLite):
 *   - every probe_ms, the fallback timer;
 *   - at once when kicked (this process committed);
 *   - at once when any process writes the database (notify.h), and again
 *     1, 2 ... 32 ms later while such a write is not yet visible.
 * On a change it reads every row after its cursor, oldest first, in
 * batches, and calls on_rows with each batch; the cursor moves past a
 * batch only once on_rows has had it, so a failed read is retried and no
 * row is handed over twice. While nobody listens it does not read rows: it
 * moves its cursor to the latest id and says so with an empty batch, whose
 * max_index is the new cursor (the consumer's waiters then read by cursor
 * themselves, see hold.c).
 *
 * The consumer may add one descriptor of its own to the watcher's poll
 * (chat-fcgi's epoll set of parked requests) and a turn callback, called
 * on the watcher thread after every wake-up: it handles that descriptor
 * and its deadlines, and returns the time of its next deadline. Every
 * callback runs on the watcher thread, one at a time.
 */
#ifndef CHAT_WATCH_H
#define CHAT_WATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

struct watch;

struct watch_opts {
    struct store_opts store;  /* the watcher's own connection */
    int probe_ms;             /* timer probe while listening, 1..1000 */
    /*
     * The rows stored after the previous batch, oldest first, all rooms;
     * rows->n == 0 when rows up to rows->max_index were skipped unread.
     * Returns the id of the last row it took: rows->max_index, or less when
     * it ran out of memory (the rest comes again with the next probe).
     */
    int64_t (*on_rows)(void *ctx, const struct store_page *rows);
    /*
     * Optional: after each wake-up and batch; returns the util_now_ms()
     * time at which it wants to run again, INT64_MAX for none.
     */
    int64_t (*on_turn)(void *ctx, int64_t now);
    int consumer_fd;          /* polled for on_turn too; -1 for none */
    void *ctx;
};

/*
 * Reads the current latest id, tells on_rows (an empty batch: rows up to it
 * are never handed over) and starts the thread. Returns 0 and sets *out, or a negative code with *f set.
 */
int watch_start(const struct watch_opts *o, struct watch **out, struct chat_fail *f);
/* Stops and joins the thread, frees the watcher. watch_stop(NULL) is a no-op. */
void watch_stop(struct watch *w);

/* Probe now and run on_turn: this process committed. Any thread. */
void watch_kick(struct watch *w);
/* Run on_turn without a probe: the consumer has work of its own. Any thread. */
void watch_nudge(struct watch *w);
/* Whether the consumer wants rows. Any thread; turning it on probes at once. */
void watch_listen(struct watch *w, bool on);
/* Change probes made since start. Any thread. */
int64_t watch_probes(struct watch *w);
/*
 * Whether the watcher's last read failed (the database is away): it may
 * have missed rows until a read works again. Any thread.
 */
bool watch_failing(struct watch *w);

#endif
