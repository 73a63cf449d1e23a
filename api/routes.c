/* routes: POST /jobs, POST /jobs/read, POST /jobs/burn, GET /jobs/{id}. */
#include "routes.h"
#include "idempotency.h"
#include "job.h"
#include "job_view.h"
#include "log.h"
#include "surge_metrics.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RETRY_AFTER "Retry-After: 1\r\n"
#define TYPE_NAME_MAX 16 /* longest job type name in an answer; "unknown" is 7 */

/* Stores the job hash and queues its id on the queue of its type in one
 * atomic step: a job is either fully accepted or not at all. KEYS: job hash,
 * the type's queue. ARGV: type, params, created_at, id. */
#define ENQUEUE_LUA                                                                              \
    "redis.call('HSET', KEYS[1], 'type', ARGV[1], 'params', ARGV[2], 'status', 'queued', "      \
    "'attempts', '0', 'created_at', ARGV[3]) "                                                   \
    "redis.call('LPUSH', KEYS[2], ARGV[4]) "

static const char enqueue_script[] = ENQUEUE_LUA "return 1";

/* The same for a request with an Idempotency-Key, in the same atomic step:
 * the key's string holds the id of the job it created and a hash of that job
 * (type and params as read, so spacing and key order do not matter); a
 * request with the key again gets that id back ('replay') if it asks for the
 * same job, or 'conflict'. KEYS: job hash, the type's queue, idempotency key. ARGV:
 * type, params, created_at, id, seconds the key lives. */
static const char enqueue_idem_script[] =
    "local fp = redis.sha1hex(ARGV[1] .. ' ' .. ARGV[2]) "
    "local seen = redis.call('GET', KEYS[3]) "
    "if seen then "
    "  if string.sub(seen, 28) == fp then return {'replay', string.sub(seen, 1, 26)} end "
    "  return {'conflict', string.sub(seen, 1, 26)} "
    "end " ENQUEUE_LUA "redis.call('SET', KEYS[3], ARGV[4] .. ' ' .. fp, 'EX', ARGV[5]) "
    "return {'new', ARGV[4]}";

/* One request waiting for Redis. */
struct pending_job {
    struct http_request *req;
    char id[JOB_ID_LEN + 1];
    enum job_type type;
    bool idempotent; /* sent with an Idempotency-Key */
};

static void unavailable(struct http_request *req, const char *why)
{
    char msg[128];
    snprintf(msg, sizeof msg, "the queue is unavailable (%s); try again", why);
    http_respond_error(req, 503, "unavailable", msg, RETRY_AFTER);
}

/* The answer of the Idempotency-Key script: 1 for a new job, 0 for a replay
 * (p->id becomes the first job's id), -1 for a key used for another job,
 * -2 for an answer that makes no sense. */
static int idem_outcome(const redisReply *reply, struct pending_job *p)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING)
        return -2;
    const char *what = reply->element[0]->str;
    if (!strcmp(what, "conflict"))
        return -1;
    if (!job_id_valid(reply->element[1]->str, reply->element[1]->len))
        return -2;
    if (!strcmp(what, "new"))
        return 1;
    if (strcmp(what, "replay") != 0)
        return -2;
    memcpy(p->id, reply->element[1]->str, JOB_ID_LEN);
    return 0;
}

/* Copies n bytes to p; returns the end of what it wrote. */
static char *append(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static void on_enqueued(redisReply *reply, const char *err, void *arg)
{
    struct pending_job *p = arg;
    int outcome = 1;
    if (reply && reply->type != REDIS_REPLY_ERROR && p->idempotent)
        outcome = idem_outcome(reply, p);
    if (!reply || reply->type == REDIS_REPLY_ERROR || outcome == -2) {
        log_warn("enqueue_failed", "job %s: %s", p->id,
                 !reply ? err : outcome == -2 ? "unexpected answer" : reply->str);
        unavailable(p->req, reply ? "redis error" : err);
        free(p);
        return;
    }
    if (outcome == -1) {
        http_respond_error(p->req, 422, "idempotency_key_reused",
                           "this Idempotency-Key was sent with another job; use a new key for a "
                           "new job",
                           NULL);
        free(p);
        return;
    }
    if (outcome == 1) {
        const char *labels[] = {job_type_name(p->type)};
        metrics_add(sm.jobs_enqueued, labels, 1);
    }
    /* Built with memcpy: this runs for every job (no printf on the request
     * path). */
    static const char location[] = "Location: /jobs/";
    static const char replayed[] = "\r\nIdempotent-Replayed: true\r\n";
    char headers[sizeof location + JOB_ID_LEN + sizeof replayed];
    char *h = headers;
    h = append(h, location, sizeof location - 1);
    h = append(h, p->id, JOB_ID_LEN);
    if (outcome == 0)
        h = append(h, replayed, sizeof replayed - 1);
    else
        h = append(h, "\r\n", 2);
    *h = '\0';
    static const char body_id[] = "{\"id\":\"", body_type[] = "\",\"type\":\"",
                      body_end[] = "\",\"status\":\"queued\"}";
    const char *type = job_type_name(p->type);
    size_t type_len = strlen(type);
    char body[sizeof body_id + JOB_ID_LEN + sizeof body_type + TYPE_NAME_MAX + sizeof body_end];
    char *b = body;
    b = append(b, body_id, sizeof body_id - 1);
    b = append(b, p->id, JOB_ID_LEN);
    b = append(b, body_type, sizeof body_type - 1);
    b = append(b, type, type_len < TYPE_NAME_MAX ? type_len : TYPE_NAME_MAX);
    b = append(b, body_end, sizeof body_end - 1);
    http_respond(p->req, 202, headers, body, (size_t)(b - body));
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
    char idem[IDEM_KEY_MAX + 1];
    if (req->idempotency_key && idem_parse_header(req->idempotency_key, req->idempotency_key_len,
                                                  req->idempotency_keys, idem, &err)) {
        http_respond_error(req, err.status, err.code, err.message, NULL);
        return;
    }
    if (job_parse_request(req->body, req->body_len, forced, api->cfg->burn_default_seconds,
                          api->cfg->burn_max_seconds, &jr, &err)) {
        http_respond_error(req, err.status, err.code, err.message, NULL);
        return;
    }
    struct pending_job *p = xmalloc(sizeof *p);
    p->req = req;
    p->type = jr.type;
    p->idempotent = req->idempotency_key != NULL;
    job_new_id(p->id);
    char created[32];
    util_format_iso8601(util_now_ms(), created, sizeof created);
    struct buf key = {0};
    key_job(&key, p->id);
    if (!p->idempotent) {
        const char *argv[] = {"2", key.data, key_queue(jr.type), job_type_name(jr.type),
                              jr.params_json, created, p->id};
        rc_eval(api->redis, on_enqueued, p, enqueue_script, (int)ARRAY_LEN(argv), argv, NULL);
    } else {
        struct buf idem_key = {0};
        idem_redis_key(&idem_key, idem);
        char ttl[24];
        ttl[util_format_uint(ttl, (uint64_t)api->cfg->result_ttl_seconds)] = '\0';
        const char *argv[] = {"3", key.data, key_queue(jr.type), idem_key.data,
                              job_type_name(jr.type), jr.params_json, created, p->id, ttl};
        rc_eval(api->redis, on_enqueued, p, enqueue_idem_script, (int)ARRAY_LEN(argv), argv,
                NULL);
        buf_free(&idem_key);
    }
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

void routes_match(enum llhttp_method method, const char *path, size_t len, struct route_match *m)
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
