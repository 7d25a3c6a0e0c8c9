/*
 * route.h - from an accepted FastCGI request to its handler.
 */
#ifndef CHAT_ROUTE_H
#define CHAT_ROUTE_H

#include <fcgiapp.h>

#include "api.h"

/*
 * Reads the request (path, method, content type, body), decodes its
 * parameters and runs the matching handler; answers every refusal as JSON.
 * Takes ownership of r (a malloc'd, accepted request): when it returns, r was
 * answered and freed, or parked.
 */
void route_request(struct api_ctx *c, FCGX_Request *r);

#endif
