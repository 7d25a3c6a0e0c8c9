/*
 * test_unit.c - the cmocka unit tests, one group of every file's tests
 * (test_fields.c, test_store.c, test_hold.c), and the database helpers
 * they share (unit.h).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "unit.h"

int db_setup(void **state)
{
    struct db *d = calloc(1, sizeof *d);
    struct chat_fail f;
    int fd;
    snprintf(d->path, sizeof d->path, "/tmp/chat-unit-XXXXXX");
    fd = mkstemp(d->path);
    close(fd);
    unlink(d->path);
    struct store_opts o = { .path = d->path, .busy_ms = 1000 };
    if (store_open(&o, &d->s, &f) < 0) {
        fprintf(stderr, "store_open: %s\n", f.msg);
        return -1;
    }
    *state = d;
    return 0;
}

int db_teardown(void **state)
{
    struct db *d = *state;
    char p[80];
    store_close(d->s);
    unlink(d->path);
    snprintf(p, sizeof p, "%s-wal", d->path); unlink(p);
    snprintf(p, sizeof p, "%s-shm", d->path); unlink(p);
    free(d);
    return 0;
}

void send_one(struct store *s, const char *room, const char *text, const char *cid,
              struct store_sent *out)
{
    struct valid_send m = { .text = text, .text_len = strlen(text), .user = "u", .user_len = 1,
                            .room = room, .room_len = strlen(room),
                            .cid = cid, .cid_len = cid ? strlen(cid) : 0 };
    struct store_item item = { .msg = &m }, *one = &item;
    assert_int_equal(store_append_batch(s, &one, 1), 0);
    assert_int_equal(item.err, 0);
    *out = item.sent;
}

int main(void)
{
    const struct CMUnitTest *(*const groups[])(size_t *) = { fields_tests, store_tests, hold_tests };
    struct CMUnitTest *all = NULL;
    size_t total = 0;
    int rc;

    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
        size_t n;
        const struct CMUnitTest *t = groups[g](&n);
        struct CMUnitTest *more = realloc(all, (total + n) * sizeof *all);
        if (!more) {
            free(all);
            return 1;
        }
        all = more;
        memcpy(all + total, t, n * sizeof *t);
        total += n;
    }
    rc = _cmocka_run_group_tests("unit", all, total, NULL, NULL);
    free(all);
    return rc;
}
