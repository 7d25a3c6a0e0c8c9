/*
 * unit.h - what the files of the unit tests share: a store on a temporary
 * database file for each test, a helper that stores one message, and each
 * file's list of tests.
 */
#ifndef CHAT_UNIT_H
#define CHAT_UNIT_H

#include <stddef.h>

#include "store.h"

struct db { char path[64]; struct store *s; };

/* cmocka set-up and tear-down: a new database file in *state. */
int db_setup(void **state);
int db_teardown(void **state);
/* Stores one message (cid may be NULL), asserting that it was stored. */
void send_one(struct store *s, const char *room, const char *text, const char *cid,
              struct store_sent *out);

struct CMUnitTest;
const struct CMUnitTest *fields_tests(size_t *n);
const struct CMUnitTest *store_tests(size_t *n);
const struct CMUnitTest *hold_tests(size_t *n);

#endif
