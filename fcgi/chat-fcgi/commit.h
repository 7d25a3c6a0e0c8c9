/*
 * commit.h - group commit of chat-fcgi's sends.
 *
 * A worker thread with a validated send queues it with its request. When
 * no other worker is committing, it becomes the committer: it stores all
 * that is queued in one transaction (one WAL append, one round of file
 * locks, a page cache that stays warm), answers each of those requests,
 * and goes on while more queued up meanwhile. Otherwise it returns to
 * accepting at once and the committer takes its send in the next batch.
 * Under load, a committer first waits a moment (at most 0.2 ms) for the
 * sends the other workers are reading; while it commits, it gives its turn
 * to serve to another worker (workers.h). So, alone, a send costs what it
 * did; under load the cost of a commit is shared by the sends that arrive
 * together; and no sender hears 200 before its message is committed.
 */
#ifndef CHAT_COMMIT_H
#define CHAT_COMMIT_H

#include <fcgiapp.h>

#include "hold.h"
#include "store.h"
#include "valid.h"

struct commit;

struct commit_opts {
    struct store_opts store;  /* the committers' connection */
    struct hold *hold;        /* kicked after each batch that stored a message */
    size_t gather;            /* sends that can be read at once: the workers serving while one commits */
    /* Answers and ends a request once its message is committed or refused. */
    void (*answer)(FCGX_Request *r, const struct valid_send *m, const struct store_item *it);
};

int commit_open(const struct commit_opts *o, struct commit **out, struct chat_fail *f);
/* Once no worker submits any more. commit_close(NULL) is a no-op. */
void commit_close(struct commit *c);

/*
 * Queues a copy of m and, when no other thread is committing, commits and
 * answers the queue. Returns 0 when r was handed over (it is answered), or
 * CHAT_EUNAVAIL with *f set (the caller still owns r).
 */
int commit_submit(struct commit *c, FCGX_Request *r, const struct valid_send *m,
                  struct chat_fail *f);

#endif
