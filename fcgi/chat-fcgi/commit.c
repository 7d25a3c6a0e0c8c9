/*
 * commit.c - group commit by whichever worker finds nobody committing
 * (see commit.h), on the shared send queue (sendq.h).
 */
#include <stdlib.h>

#include "chat_limits.h"
#include "commit.h"
#include "metrics.h"
#include "sendq.h"
#include "workers.h"

struct commit {
    struct sendq q;
    struct store *store;       /* the drainer's: one drainer at a time */
    struct hold *hold;
    void (*answer)(FCGX_Request *, const struct valid_send *, const struct store_item *);
};

/* Answers the requests of a batch and frees it. */
static void answer_all(struct commit *c, struct sendq_job **batch, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        c->answer(batch[i]->req, &batch[i]->msg, &batch[i]->item);
        free(batch[i]);
    }
}

int commit_submit(struct commit *c, FCGX_Request *r, const struct valid_send *m,
                  struct chat_fail *f)
{
    struct sendq_job *j, *batch[CHAT_BATCH_MAX];
    struct chat_fail why;
    bool drain;
    int err = 0;
    size_t n, stored;

    if (!(j = sendq_job_new(m)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    j->req = r;
    if (sendq_push(&c->q, j, &drain, f) < 0)
        return f->code;
    if (!drain)
        return 0;   /* the drainer takes it with the batch it gathers or the next one */
    /* Its disk writes are not the CPU's work: another worker serves meanwhile. */
    workers_wait_begin();
    for (;;) {
        /*
         * Where the writers of several processes take turns (nodes on
         * PostgreSQL), a short queue waits for this one's turn first:
         * what queues meanwhile goes in the same commit. Not once a batch
         * was refused: the store below is skipped then, and the turn must
         * not be left held.
         */
        bool waited = err == 0 && sendq_short(&c->q) && store_write_ahead(c->store);
        if ((n = sendq_next_batch(&c->q, batch, waited)) == 0)
            break;
        /*
         * After the database refused a whole batch (busy, a full or
         * read-only disk), what queued meanwhile is refused the same way
         * rather than wait out the busy timeout again.
         */
        if (err == 0 && (err = sendq_store(c->store, batch, n, &stored, &why)) == 0 && stored) {
            metrics_stored(stored);
            hold_kick(c->hold);
        }
        for (size_t i = 0; err < 0 && i < n; i++) {
            if (batch[i]->item.err == 0) {
                batch[i]->item.err = err;
                batch[i]->item.fail = why;
            }
        }
        answer_all(c, batch, n);
    }
    return 0;
}

int commit_open(const struct commit_opts *o, struct commit **out, struct chat_fail *f)
{
    struct commit *c = calloc(1, sizeof *c);
    int err;

    if (!c)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    if ((err = sendq_init(&c->q, CHAT_COMMIT_QUEUE_MAX, o->gather, f)) < 0) {
        free(c);
        return err;
    }
    c->hold = o->hold;
    c->answer = o->answer;
    /* Its commits are what every send waits for: the WAL's syncs happen aside. */
    struct store_opts so = o->store;
    so.checkpoint_aside = true;
    if ((err = store_open(&so, &c->store, f)) < 0) {
        sendq_destroy(&c->q);
        free(c);
        return err;
    }
    *out = c;
    return 0;
}

void commit_close(struct commit *c)
{
    if (!c)
        return;
    store_close(c->store);
    sendq_destroy(&c->q);
    free(c);
}
