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

enum api_route { ROUTE_NONE, ROUTE_JOBS, ROUTE_JOBS_READ, ROUTE_JOBS_BURN, ROUTE_JOB };

/* Where a request goes: pure, so unit tests can check every route. */
struct route_match {
    enum api_route route;
    const char *label; /* metrics label: "/jobs", "/jobs/{id}", "unknown" */
    const char *allow; /* the methods the route accepts ("POST", "GET") */
    bool method_ok;
    const char *id; /* ROUTE_JOB: the id in the path (not validated yet) */
    size_t id_len;
};

void routes_match(enum llhttp_method method, const char *path, size_t path_len,
                  struct route_match *out);

/* The http_server handler for the public port; ctx is a struct api_ctx. */
void routes_handle(struct http_request *req, void *ctx);

#endif
