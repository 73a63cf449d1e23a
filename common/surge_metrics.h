/* surge_metrics: the metrics of DESIGN.md, defined once for both binaries.
 * Keep the names in sync with docs/architecture.md, the Grafana dashboard and
 * the PrometheusRule in k8s/ (a test compares them with what we export). */
#ifndef SURGE_SURGE_METRICS_H
#define SURGE_SURGE_METRICS_H

#include "http_server.h"
#include "metrics.h"
#include "redis_client.h"

#include <uv.h>

struct surge_metrics {
    struct metric *http_requests;       /* {route,code} */
    struct metric *http_duration;       /* {route} */
    struct metric *dependency_up;       /* {dependency} */
    struct metric *queue_depth;         /* {type} ids waiting in the queue of each type */
    struct metric *retry_depth;         /* ids waiting for their backoff */
    struct metric *dead_depth;          /* ids on the dead list */
    struct metric *jobs_enqueued;       /* api: {type} */
    struct metric *http_connections;    /* {server} open now */
    struct metric *http_refused;        /* {server} closed at once at the limit */
    struct metric *http_accept_errors;  /* {server,error} lost to accept errors */
    struct metric *jobs_finished;       /* worker: {type,outcome} */
    struct metric *job_duration;        /* worker: {type} */
    struct metric *job_wait;            /* worker: {type} */
    struct metric *jobs_in_progress;    /* worker: {type} */
    struct metric *jobs_recovered;      /* worker */
    struct metric *stale_outcomes;      /* worker: {type,action} */
};

extern struct surge_metrics sm;

enum surge_role { SURGE_ROLE_API, SURGE_ROLE_WORKER };

void surge_metrics_init(enum surge_role role);
/* Worker: one change that a take no longer current asked for and that changed
 * nothing (action: succeed, fail, requeue, take, recover); type is the job's
 * type as stored, "unknown" when it is not one we know. */
void surge_metrics_stale(const char *type, const char *action);
/* http_observe_fn for both servers: counts and times every answer. */
void surge_metrics_observe_http(const struct http_request *req, int status, void *ctx);
/* http_conn_event_fn of the HTTP servers (the api's public port, both admin
 * ports): open, refused and lost connections. */
void surge_metrics_conn_event(const char *server, enum http_conn_event ev, int err, size_t open);
/* Reads the size of each type's queue, the retry set and the dead list from
 * Redis every second. */
void surge_metrics_watch_queue(uv_loop_t *loop, struct rc *redis);
void surge_metrics_stop(void);

#endif
