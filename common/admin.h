/* admin: the admin port both binaries serve (DESIGN.md): GET /healthz,
 * GET /readyz, GET /metrics. Never exposed by the Ingress. */
#ifndef SURGE_ADMIN_H
#define SURGE_ADMIN_H

#include "buf.h"
#include "health.h"
#include "http_server.h"
#include "redis_client.h"

struct admin_opts {
    const char *address;
    int port;
    struct health *health;
    /* Appends the Prometheus text exposition; NULL answers 404. */
    void (*render_metrics)(struct buf *out, void *arg);
    void *metrics_arg;
    http_observe_fn observe; /* metrics of the admin requests themselves; may be NULL */
    http_conn_event_fn on_conn_event; /* metrics of its connections; may be NULL */
};

/* Connections the admin port serves at once: the kubelet's probes and
 * Prometheus need a handful; as many as the public port's default, so that
 * idle connections there (test_chaos.py holds 500) leave room for probes. */
#define ADMIN_MAX_CONNECTIONS 1024

/* Starts the admin server; returns 0 or a negative libuv error. */
int admin_start(struct http_server **out, uv_loop_t *loop, const struct admin_opts *opts);

/* A health probe that PINGs Redis through rc (the arg) and reports latency. */
void admin_probe_redis(struct health *h, int idx, void *rc);

#endif
