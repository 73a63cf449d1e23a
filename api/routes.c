/* routes: POST /jobs, POST /jobs/read, POST /jobs/burn, GET /jobs/{id}. */
#include "routes.h"
#include "job.h"
#include "job_view.h"
#include "log.h"
#include "surge_metrics.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER "Retry-After: 1\r\n"

/* Stores the job hash and queues its id in one atomic step: a job is either
 * fully accepted or not at all. KEYS: job hash, queue. ARGV: type, params,
 * created_at, id. */
static const char enqueue_script[] =
    "redis.call('HSET', KEYS[1], 'type', ARGV[1], 'params', ARGV[2], 'status', 'queued', "
    "'attempts', '0', 'created_at', ARGV[3]) "
    "redis.call('LPUSH', KEYS[2], ARGV[4]) "
    "return 1";

/* One request waiting for Redis. */
struct pending_job {
    struct http_request *req;
    char id[JOB_ID_LEN + 1];
    enum job_type type;
};

static void unavailable(struct http_request *req, const char *why)
{
    char msg[128];
    snprintf(msg, sizeof msg, "the queue is unavailable (%s); try again", why);
    http_respond_error(req, 503, "unavailable", msg, RETRY_AFTER);
}

static void on_enqueued(redisReply *reply, const char *err, void *arg)
{
    struct pending_job *p = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        log_warn("enqueue_failed", "job %s: %s", p->id, reply ? reply->str : err);
        unavailable(p->req, reply ? "redis error" : err);
        free(p);
        return;
    }
    const char *labels[] = {job_type_name(p->type)};
    metrics_add(sm.jobs_enqueued, labels, 1);
    char headers[64 + JOB_ID_LEN];
    snprintf(headers, sizeof headers, "Location: /jobs/%s\r\n", p->id);
    char body[128];
    int n = snprintf(body, sizeof body, "{\"id\":\"%s\",\"type\":\"%s\",\"status\":\"queued\"}",
                     p->id, job_type_name(p->type));
    http_respond(p->req, 202, headers, body, (size_t)n);
    free(p);
}

static void create_job(struct api_ctx *api, struct http_request *req, enum job_type forced)
{
    if (!req->json_content_type) {
        http_respond_error(req, 415, "unsupported_media_type",
                           "send the body as Content-Type: application/json", NULL);
        return;
    }
    struct job_request jr;
    struct job_error err;
    if (job_parse_request(req->body, req->body_len, forced, api->cfg->burn_default_seconds,
                          api->cfg->burn_max_seconds, &jr, &err)) {
        http_respond_error(req, err.status, err.code, err.message, NULL);
        return;
    }
    struct pending_job *p = xmalloc(sizeof *p);
    p->req = req;
    p->type = jr.type;
    job_new_id(p->id);
    char created[32];
    util_format_iso8601(util_now_ms(), created, sizeof created);
    struct buf key = {0};
    key_job(&key, p->id);
    rc_command(api->redis, on_enqueued, p, "EVAL %s 2 %s %s %s %s %s %s", enqueue_script,
               key.data, key_queue(), job_type_name(jr.type), jr.params_json, created, p->id);
    buf_free(&key);
}

struct pending_get {
    struct http_request *req;
    char id[JOB_ID_LEN + 1];
};

static void on_job_hash(redisReply *reply, const char *err, void *arg)
{
    struct pending_get *p = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        unavailable(p->req, reply ? "redis error" : err);
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0) {
        http_respond_error(p->req, 404, "not_found", "no such job (or it has expired)", NULL);
    } else {
        struct buf body = {0};
        job_view_render(p->id, reply, &body);
        http_respond(p->req, 200, NULL, body.data, body.len);
        buf_free(&body);
    }
    free(p);
}

static void get_job(struct api_ctx *api, struct http_request *req, const char *id, size_t len)
{
    if (!job_id_valid(id, len)) {
        http_respond_error(req, 404, "not_found", "no such job", NULL);
        return;
    }
    struct pending_get *p = xmalloc(sizeof *p);
    p->req = req;
    memcpy(p->id, id, JOB_ID_LEN);
    p->id[JOB_ID_LEN] = '\0';
    struct buf key = {0};
    key_job(&key, p->id);
    rc_command(api->redis, on_job_hash, p, "HGETALL %s", key.data);
    buf_free(&key);
}

static void method_not_allowed(struct http_request *req, const char *allow)
{
    char headers[64];
    char msg[64];
    snprintf(headers, sizeof headers, "Allow: %s\r\n", allow);
    snprintf(msg, sizeof msg, "this route accepts %s only", allow);
    http_respond_error(req, 405, "method_not_allowed", msg, headers);
}

void routes_match(enum http_method method, const char *path, size_t len, struct route_match *m)
{
    bool is_get = method == HTTP_GET || method == HTTP_HEAD;
    bool is_post = method == HTTP_POST;
    memset(m, 0, sizeof *m);
    m->route = ROUTE_NONE;
    m->label = "unknown";
    if ((len == 5 && !memcmp(path, "/jobs", 5)) || (len == 6 && !memcmp(path, "/jobs/", 6))) {
        m->route = ROUTE_JOBS;
        m->label = "/jobs";
        m->allow = "POST";
        m->method_ok = is_post;
        return;
    }
    if (len <= 6 || memcmp(path, "/jobs/", 6) != 0)
        return;
    const char *rest = path + 6;
    size_t n = len - 6;
    enum job_type t = job_type_parse(rest, n);
    if (t != JOB_TYPE_UNKNOWN) {
        m->route = t == JOB_READ ? ROUTE_JOBS_READ : ROUTE_JOBS_BURN;
        m->label = t == JOB_READ ? "/jobs/read" : "/jobs/burn";
        m->allow = "POST";
        m->method_ok = is_post;
        return;
    }
    if (memchr(rest, '/', n))
        return;
    m->route = ROUTE_JOB;
    m->label = "/jobs/{id}";
    m->allow = "GET";
    m->method_ok = is_get;
    m->id = rest;
    m->id_len = n;
}

void routes_handle(struct http_request *req, void *ctx)
{
    struct api_ctx *api = ctx;
    struct route_match m;
    routes_match(req->method, req->path, req->path_len, &m);
    req->route = m.label;
    if (m.route == ROUTE_NONE) {
        http_respond_error(req, 404, "not_found",
                           "no such route; see POST /jobs and GET /jobs/{id}", NULL);
        return;
    }
    if (!m.method_ok) {
        method_not_allowed(req, m.allow);
        return;
    }
    switch (m.route) {
    case ROUTE_JOBS: create_job(api, req, JOB_TYPE_UNKNOWN); break;
    case ROUTE_JOBS_READ: create_job(api, req, JOB_READ); break;
    case ROUTE_JOBS_BURN: create_job(api, req, JOB_BURN); break;
    case ROUTE_JOB: get_job(api, req, m.id, m.id_len); break;
    case ROUTE_NONE: break;
    }
}
