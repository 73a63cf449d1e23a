/* routes: the public HTTP API of surge-api (DESIGN.md "HTTP API"). */
#ifndef SURGE_API_ROUTES_H
#define SURGE_API_ROUTES_H

#include "config.h"
#include "http_server.h"
#include "redis_client.h"

struct api_ctx {
    const struct cfg *cfg;
    struct rc *redis;
};

/* The http_server handler for the public port; ctx is a struct api_ctx. */
void routes_handle(struct http_request *req, void *ctx);

#endif
