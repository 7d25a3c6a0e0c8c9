/*
 * api.c - /send/msg, /get/msg and /healthz (SPEC sections 2, 3 and 7).
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "metrics.h"
#include "render.h"
#include "reply.h"
#include "workers.h"

/* Answers 200 with a rendered body, counts it, and ends the request. */
static int answer(FCGX_Request *r, enum metrics_route route, char *body, size_t len,
                  struct chat_fail *f)
{
    if (!body)
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    metrics_request(route, 200);
    reply_json(r, 200, NULL, body, len);
    free(body);
    reply_done(r);
    return 0;
}

/*
 * /send/msg - store one message.
 *   GET ?text=&user=&room=&cid=, or POST the same as a form or a JSON object.
 *   200 {"ok":true,"id":N,"room":"lobby","ts":MS}, plus "duplicate":true when
 *   the cid was used before in the room (id is then the first message's).
 *   Behind authentication (nginx passes the name as REMOTE_USER) the user
 *   is that name: 403 when the client's user differs, the name when absent.
 *   The message is stored with those sent meanwhile in one transaction
 *   (commit.c), and answered by api_send_answer once it is committed.
 */
int api_send(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f)
{
    const char *auth = FCGX_GetParam("REMOTE_USER", r->envp);
    struct valid_send m;
    int err;

    if ((err = params_send(p, &m, f)) < 0 ||
        (err = params_auth_user(&m, auth, auth ? strlen(auth) : 0, f)) < 0)
        return err;
    return commit_submit(c->commit, r, &m, f);
}

void api_send_answer(FCGX_Request *r, const struct valid_send *m, const struct store_item *it)
{
    struct chat_fail f = it->fail;
    size_t len;
    char *body;

    if (it->err == 0) {
        body = render_sent(&it->sent, m->room, m->room_len, &len);
        if (answer(r, MR_SEND, body, len, &f) == 0)
            return;
    }
    metrics_request(MR_SEND, chat_err_status(f.code));
    reply_fail(r, &f, NULL);
    reply_done(r);
}

/*
 * /get/msg - messages of a room after a cursor.
 *   ?index=N (default 0) &room= &limit=1..1000 (100) &tail=1..1000 &wait=0..60
 *   200 {"data":[texts],"max_index":N,"messages":[{"id","room","user","text","ts"}],
 *        "more":bool}
 *   With wait > 0 and nothing after index, the request is parked until a
 *   message arrives or the wait ends (then data and messages are empty).
 */
int api_get(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f)
{
    struct get_args g;
    struct store_page page;
    size_t len;
    char *body;
    int err;

    if ((err = params_get(p, &g, f)) < 0)
        return err;
    /* The usual re-poll, at the room's latest id: parked without a read. */
    if ((err = hold_try_park(c->hold, r, c->conn, &g, f)) <= 0)
        return err;
    if ((err = store_fetch(c->store, g.room, g.room_len, g.index, g.limit, g.tail, &page, f)) < 0)
        return err;
    /* A cursor ahead of the room answers at once, so the client resyncs. */
    if (g.wait > 0 && hold_page_waits(&page, g.index, g.tail)) {
        if (g.tail > 0)
            g.index = 0;
        err = hold_park(c->hold, r, c->conn, &g, page.seen_id, f);
        store_page_free(&page);
        return err;
    }
    body = render_page(&page, &len);
    store_page_free(&page);
    return answer(r, MR_GET, body, len, f);
}

/*
 * /healthz - 200 {"ok":true,"held":N,"probes":N} (long-polls held now,
 * change probes since start) when the database can be read and
 * written now, 503 otherwise.
 */
int api_healthz(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f)
{
    size_t len;
    char *body;
    int err;

    (void)p;
    workers_wait_begin();     /* the check waits for the write lock, maybe a commit's */
    if ((err = store_check(c->store, f)) < 0)
        return err;
    body = render_health(hold_count(c->hold), hold_probes(c->hold), &len);
    return answer(r, MR_HEALTHZ, body, len, f);
}

/*
 * /metrics - Prometheus text format: requests by route and status, messages
 * stored, long-polls held, change probes, wake-up latency histogram.
 */
int api_metrics(struct api_ctx *c, FCGX_Request *r, const struct params *p, struct chat_fail *f)
{
    size_t len;
    char *body;

    (void)p;
    if (!(body = metrics_render(hold_count(c->hold), hold_probes(c->hold), &len)))
        return chat_fail(f, CHAT_EUNAVAIL, "out of memory");
    metrics_request(MR_METRICS, 200);
    reply_body(r, 200, "text/plain; version=0.0.4", NULL, body, len);
    free(body);
    reply_done(r);
    return 0;
}
