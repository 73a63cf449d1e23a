/* surge_metrics: DESIGN.md's metrics, and the queue-size poller. */
#include "surge_metrics.h"
#include "job.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

struct surge_metrics sm;

static const char *const stale_actions[] = {"succeed", "fail", "requeue", "take", "recover"};

static uv_timer_t poll_timer;
static struct rc *poll_redis;
static bool poll_running, poll_started;

void surge_metrics_init(enum surge_role role)
{
    sm.http_requests = metrics_counter("surge_http_requests_total",
                                       "HTTP requests answered, by route and status code.",
                                       "route,code");
    sm.http_duration = metrics_histogram(
        "surge_http_request_duration_seconds", "Time from a complete request to its answer.",
        "route", metrics_buckets_http, metrics_buckets_http_count);
    sm.dependency_up = metrics_gauge("surge_dependency_up",
                                     "1 if the last check of a dependency succeeded, else 0.",
                                     "dependency");
    sm.queue_depth = metrics_gauge("surge_queue_depth",
                                   "Job ids waiting in the queue of each type (surge:queue:{type}).",
                                   "type");
    sm.retry_depth =
        metrics_gauge("surge_retry_depth", "Job ids waiting for their retry backoff.", NULL);
    sm.dead_depth = metrics_gauge("surge_dead_depth", "Job ids on the dead list.", NULL);
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        const char *v[] = {job_type_name((enum job_type)t)};
        metrics_set(sm.queue_depth, v, 0);
    }
    /* The connections of each HTTP server: the api's public port and both
     * binaries' admin ports. */
    sm.http_connections = metrics_gauge("surge_http_connections",
                                        "Connections open now, by server (api, admin).", "server");
    sm.http_refused = metrics_counter(
        "surge_http_connections_refused_total",
        "Connections closed at once because the server had its maximum open "
        "(SURGE_MAX_CONNECTIONS for the api).",
        "server");
    sm.http_accept_errors = metrics_counter(
        "surge_http_accept_errors_total",
        "Connections lost because accepting them failed, by error (emfile: the process is "
        "out of descriptors; enfile: the system is).",
        "server,error");
    static const char *const api_servers[] = {"api", "admin"}, *const worker_servers[] = {"admin"};
    const char *const *servers = role == SURGE_ROLE_API ? api_servers : worker_servers;
    size_t n_servers = role == SURGE_ROLE_API ? ARRAY_LEN(api_servers) : ARRAY_LEN(worker_servers);
    static const char *const errors[] = {"emfile", "enfile"};
    for (size_t i = 0; i < n_servers; i++) {
        const char *v[] = {servers[i]};
        metrics_set(sm.http_connections, v, 0);
        metrics_add(sm.http_refused, v, 0);
        for (size_t e = 0; e < ARRAY_LEN(errors); e++) {
            const char *ve[] = {servers[i], errors[e]};
            metrics_add(sm.http_accept_errors, ve, 0);
        }
    }
    if (role == SURGE_ROLE_API) {
        sm.jobs_enqueued = metrics_counter("surge_jobs_enqueued_total",
                                           "Jobs accepted with 202 and queued, by type.", "type");
        for (int t = 0; t < JOB_TYPE_COUNT; t++) {
            const char *v[] = {job_type_name((enum job_type)t)};
            metrics_add(sm.jobs_enqueued, v, 0);
        }
        return;
    }
    sm.jobs_finished = metrics_counter(
        "surge_jobs_finished_total",
        "Job attempts finished, by type and outcome (succeeded, failed, retry, dead, requeued).",
        "type,outcome");
    sm.job_duration = metrics_histogram("surge_job_duration_seconds",
                                        "Time a job attempt ran, by type.", "type",
                                        metrics_buckets_job, metrics_buckets_job_count);
    sm.job_wait = metrics_histogram("surge_job_wait_seconds",
                                    "Time from a job's creation to the start of an attempt.",
                                    "type", metrics_buckets_job, metrics_buckets_job_count);
    sm.jobs_in_progress =
        metrics_gauge("surge_jobs_in_progress", "Jobs this worker is running now.", "type");
    sm.jobs_recovered = metrics_counter(
        "surge_jobs_recovered_total",
        "Job ids put back on the queue from the list of a worker whose heartbeat expired.", NULL);
    sm.stale_outcomes = metrics_counter(
        "surge_stale_outcomes_total",
        "Changes asked for by a take of a job that was no longer current (its worker was "
        "taken for dead and the job put back or taken again), which changed nothing; by type "
        "and action (succeed, fail, requeue, take, recover).",
        "type,action");
    /* Every type and outcome appears from the start, so that rate() and
     * increase() see the first event too. */
    static const char *const outcomes[] = {"succeeded", "failed", "retry", "dead", "requeued"};
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        const char *type = job_type_name((enum job_type)t);
        const char *v[] = {type};
        metrics_set(sm.jobs_in_progress, v, 0);
        for (size_t o = 0; o < ARRAY_LEN(outcomes); o++) {
            const char *fo[] = {type, outcomes[o]};
            metrics_add(sm.jobs_finished, fo, 0);
        }
        for (size_t a = 0; a < ARRAY_LEN(stale_actions); a++) {
            const char *ta[] = {type, stale_actions[a]};
            metrics_add(sm.stale_outcomes, ta, 0);
        }
    }
}

void surge_metrics_stale(const char *type, const char *action)
{
    const char *labels[] = {job_type_name(job_type_parse(type, strlen(type))), action};
    metrics_add(sm.stale_outcomes, labels, 1);
}

void surge_metrics_observe_http(const struct http_request *req, int status, void *ctx)
{
    (void)ctx;
    char code[UTIL_UINT_DIGITS + 1];
    code[util_format_uint(code, status > 0 ? (uint64_t)status : 0)] = '\0';
    const char *labels[] = {req->route ? req->route : "other", code};
    metrics_add(sm.http_requests, labels, 1);
    if (req->started > 0)
        metrics_observe(sm.http_duration, labels, util_mono_seconds() - req->started);
}

static const char *accept_error_label(int err)
{
    switch (err) {
    case UV_EMFILE: return "emfile";
    case UV_ENFILE: return "enfile";
    case UV_ENOBUFS: return "enobufs";
    case UV_ENOMEM: return "enomem";
    default: return "other";
    }
}

void surge_metrics_conn_event(const char *server, enum http_conn_event ev, int err, size_t open)
{
    const char *v[] = {server};
    switch (ev) {
    case HTTP_CONN_OPENED:
    case HTTP_CONN_CLOSED:
        metrics_set(sm.http_connections, v, (double)open);
        break;
    case HTTP_CONN_REFUSED:
        metrics_add(sm.http_refused, v, 1);
        break;
    case HTTP_CONN_ACCEPT_FAILED: {
        const char *ve[] = {server, accept_error_label(err)};
        metrics_add(sm.http_accept_errors, ve, 1);
        break;
    }
    }
}

/* KEYS: retry, dead, then the queue of each type. Returns their sizes in
 * that order. */
static const char sizes_script[] =
    "local out = {redis.call('ZCARD', KEYS[1]), redis.call('LLEN', KEYS[2])}\n"
    "for i = 3, #KEYS do out[#out + 1] = redis.call('LLEN', KEYS[i]) end\n"
    "return out\n";

static void on_sizes(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    (void)arg;
    poll_running = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 + JOB_TYPE_COUNT)
        return;
    for (size_t i = 0; i < reply->elements; i++)
        if (reply->element[i]->type != REDIS_REPLY_INTEGER)
            return;
    metrics_set(sm.retry_depth, NULL, (double)reply->element[0]->integer);
    metrics_set(sm.dead_depth, NULL, (double)reply->element[1]->integer);
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        const char *v[] = {job_type_name((enum job_type)t)};
        metrics_set(sm.queue_depth, v, (double)reply->element[2 + t]->integer);
    }
}

static void poll_sizes(uv_timer_t *timer)
{
    (void)timer;
    if (poll_running || !rc_is_up(poll_redis))
        return;
    poll_running = true;
    const char *argv[5 + JOB_TYPE_COUNT] = {"EVAL", sizes_script, NULL, key_retry(), key_dead()};
    char nkeys[8];
    snprintf(nkeys, sizeof nkeys, "%d", 2 + JOB_TYPE_COUNT);
    argv[2] = nkeys;
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        argv[5 + t] = key_queue((enum job_type)t);
    size_t lens[ARRAY_LEN(argv)];
    for (size_t i = 0; i < ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    rc_command_argv(poll_redis, on_sizes, NULL, (int)ARRAY_LEN(argv), argv, lens);
}

void surge_metrics_watch_queue(uv_loop_t *loop, struct rc *redis)
{
    poll_redis = redis;
    poll_started = true;
    uv_timer_init(loop, &poll_timer);
    uv_timer_start(&poll_timer, poll_sizes, 1000, 1000);
}

void surge_metrics_stop(void)
{
    if (poll_started)
        uv_close((uv_handle_t *)&poll_timer, NULL);
    poll_started = false;
}
