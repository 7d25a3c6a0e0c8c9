/*
 * rooms.c - live subscribers by room (see rooms.h): a hash of lists.
 */
#include <string.h>
#include <sys/queue.h>

#include "rooms.h"
#include "server.h"

#define BUCKETS 4096

static struct conn_list buckets[BUCKETS];

static unsigned room_bucket(const char *room, size_t len)
{
    unsigned h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)room[i]) * 16777619u;
    return h % BUCKETS;
}

void rooms_insert(struct conn *c)
{
    if (c->indexed)
        return;
    c->bucket = room_bucket(c->room, c->room_len);
    LIST_INSERT_HEAD(&buckets[c->bucket], c, in_room);
    c->indexed = true;
}

void rooms_remove(struct conn *c)
{
    if (!c->indexed)
        return;
    LIST_REMOVE(c, in_room);
    c->indexed = false;
}

/* Queues m to the live subscribers of its room. */
static void deliver_one(struct feed_msg *m)
{
    struct conn *c, *next;

    for (c = LIST_FIRST(&buckets[room_bucket(m->room, m->room_len)]); c; c = next) {
        next = LIST_NEXT(c, in_room);
        if (c->close_code || m->id <= c->cursor || c->room_len != m->room_len ||
            memcmp(c->room, m->room, m->room_len) != 0)
            continue;
        if (!conn_push(c, m)) {
            rooms_remove(c);
            conn_too_slow(c);
            continue;
        }
        c->cursor = m->id;
        if (c->qlen == 1)
            conn_write_soon(c);   /* else asked already, by the first */
    }
}

void rooms_deliver(struct feed_msg **msgs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        deliver_one(msgs[i]);
}
