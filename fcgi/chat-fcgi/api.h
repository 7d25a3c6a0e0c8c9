/*
 * api.h - the handlers of the API routes.
 *
 * A handler gets the request's decoded parameters. It either answers and
 * ends the request (reply_json + reply_done) or hands it to the hold or the
 * committer, and returns 0; or it returns a negative code with *f set and the router
 * answers the refusal.
 */
#ifndef CHAT_API_H
#define CHAT_API_H

#include <fcgiapp.h>

#include "commit.h"
#include "hold.h"
#include "params.h"
#include "store.h"

/* What a worker thread lends to the handlers. */
struct api_ctx {
    struct store *store;     /* the thread's own connection, for reads */
    struct commit *commit;   /* sends: shared by all threads of the process */
    struct hold *hold;       /* shared by all threads of the process */
    uint64_t conn;           /* the id of the connection the request came on (0: unknown) */
};

int api_send(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f);
/* The committer's answer to a send (commit_opts.answer). */
void api_send_answer(FCGX_Request *r, const struct valid_send *m, const struct store_item *it);
int api_get(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f);
int api_healthz(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f);
int api_metrics(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f);

#endif
