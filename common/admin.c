/* admin: liveness, readiness and metrics on the admin port. */
#include "admin.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

/* The handler context lives as long as the process. */
static struct admin_opts options;

static void handle(struct http_request *req, void *ctx)
{
    (void)ctx;
    const char *p = req->path;
    bool known = !strcmp(p, "/healthz") || !strcmp(p, "/readyz") ||
                 (!strcmp(p, "/metrics") && options.render_metrics);
    if (!known) {
        http_respond_error(req, 404, "not_found", "no such admin route", NULL);
        return;
    }
    req->route = p;
    if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
        http_respond_error(req, 405, "method_not_allowed", "use GET", "Allow: GET\r\n");
        return;
    }
    struct buf body = {0};
    if (!strcmp(p, "/healthz")) {
        /* Answering at all proves the loop turns. */
        buf_puts(&body, "{\"status\":\"ok\"}");
        http_respond(req, 200, NULL, body.data, body.len);
    } else if (!strcmp(p, "/readyz")) {
        health_render(options.health, &body);
        http_respond(req, health_ready(options.health) ? 200 : 503, NULL, body.data, body.len);
    } else {
        options.render_metrics(&body, options.metrics_arg);
        http_respond_typed(req, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, body.data,
                           body.len);
    }
    buf_free(&body);
}

int admin_start(struct http_server **out, uv_loop_t *loop, const struct admin_opts *opts)
{
    options = *opts;
    struct http_server_opts h = {
        .name = "admin",
        .address = opts->address,
        .port = opts->port,
        .max_connections = ADMIN_MAX_CONNECTIONS,
        .max_header_bytes = 8192,
        .max_body_bytes = 1024,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .handler = handle,
        .observe = opts->observe,
        .on_conn_event = opts->on_conn_event,
    };
    return http_server_start(out, loop, &h);
}

struct redis_probe {
    struct health *h;
    int idx;
    double started;
};

static void on_pong(redisReply *reply, const char *err, void *arg)
{
    struct redis_probe *p = arg;
    double ms = (util_mono_seconds() - p->started) * 1000.0;
    if (!reply)
        health_report(p->h, p->idx, false, ms, err);
    else if (reply->type == REDIS_REPLY_ERROR)
        health_report(p->h, p->idx, false, ms, reply->str);
    else
        health_report(p->h, p->idx, true, ms, NULL);
    free(p);
}

void admin_probe_redis(struct health *h, int idx, void *rc)
{
    struct redis_probe *p = xmalloc(sizeof *p);
    p->h = h;
    p->idx = idx;
    p->started = util_mono_seconds();
    rc_command(rc, on_pong, p, "PING");
}
