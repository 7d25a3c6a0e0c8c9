/*
 * json_names.h - the check of a JSON body's top-level names that json-c
 * cannot make: a name given twice (SPEC section 5).
 */
#ifndef CHAT_JSON_NAMES_H
#define CHAT_JSON_NAMES_H

#include <stddef.h>

#include "chat.h"

/*
 * The duplicate check of params_add_json(), for a text json-c has accepted as
 * an object: reads the names of the members of the JSON object s[0..len) at
 * its top level (names inside nested values do not count), decoded as json-c
 * decodes them ("te\u0078t" is text). Sets *members to how many members it
 * read and returns 0 when no two names are the same; CHAT_EBADREQ, naming
 * the key in *f (as known() spells it when it returns non-NULL: a parameter), when one is repeated or when a name holds \u0000 (json-c
 * would cut it there); CHAT_EUNAVAIL when out of memory. Reads nothing
 * outside s[0..len) and ends whatever it is given; on text that is not JSON
 * its answer means nothing.
 */
int json_names_check(const char *s, size_t len, size_t *members,
                     const char *(*known)(const char *name, size_t len), struct chat_fail *f);

#endif
