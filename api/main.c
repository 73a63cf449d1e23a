/* surge-api: accepts jobs over HTTP and puts them on the Redis queue.
 * Public port: routes.c. Admin port: common/admin.c. */
#include "admin.h"
#include "app.h"
#include "health.h"
#include "http_server.h"
#include "log.h"
#include "redis_client.h"
#include "routes.h"
#include "surge_metrics.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>

static struct app app;
static struct api_ctx api;
static struct http_server *public_server, *admin_server;
static struct health *health;

static void on_redis_state(struct rc *rc, bool up, void *arg)
{
    (void)rc;
    (void)up;
    (void)arg;
    if (health)
        health_check_now(health); /* /readyz follows the connection at once */
}

static void close_rest(void *unused)
{
    (void)unused;
    /* Redis first: its pending probes report to health before it closes. */
    surge_metrics_stop();
    rc_close(api.redis, NULL, NULL);
    health_close(health, NULL, NULL);
    if (admin_server)
        http_server_shutdown(admin_server, NULL, NULL);
    app_stopped(&app);
}

static void on_public_drained(void *unused)
{
    (void)unused;
    log_info("drained", "every accepted request has been answered");
    public_server = NULL;
    close_rest(NULL);
}

static void on_stop(struct app *a)
{
    (void)a;
    /* /readyz turns 503 at once, so the Service stops sending traffic. */
    health_set_shutting_down(health);
    http_server_shutdown(public_server, on_public_drained, NULL);
}

static void on_grace_over(struct app *a)
{
    (void)a;
    log_error("shutdown_forced", "requests still open after the grace period");
    exit(1);
}

int main(void)
{
    app.on_stop = on_stop;
    app.on_grace_over = on_grace_over;
    app_init(&app, "surge-api");
    const struct cfg *cfg = &app.cfg;
    if (cfg->http_port == cfg->admin_port) {
        log_error("bad_config", "SURGE_HTTP_PORT and SURGE_ADMIN_PORT are both %d",
                  cfg->http_port);
        return 2;
    }

    /* Every connection is a descriptor: room for SURGE_MAX_CONNECTIONS, the
     * admin port's and a few of our own (Redis, listeners, stdio). */
    size_t want_fds = (size_t)cfg->max_connections + ADMIN_MAX_CONNECTIONS + 64;
    size_t fds = util_raise_fd_limit(want_fds);
    if (fds < want_fds)
        log_warn("fd_limit",
                 "only %zu descriptors may be open, %zu wanted for SURGE_MAX_CONNECTIONS=%d: "
                 "connections past that are closed at once and counted in "
                 "surge_http_accept_errors_total",
                 fds, want_fds, cfg->max_connections);

    struct rc_opts ro = app_redis_opts(&app, "redis", on_redis_state, NULL);
    surge_metrics_init(SURGE_ROLE_API);
    api.cfg = cfg;
    api.redis = rc_create(app.loop, &ro);
    surge_metrics_watch_queue(app.loop, api.redis);
    health = health_create(app.loop);
    health_add(health, "redis", admin_probe_redis, api.redis);

    struct http_server_opts po = {
        .name = "api",
        .address = cfg->bind_address,
        .port = cfg->http_port,
        .max_connections = (size_t)cfg->max_connections,
        .max_header_bytes = 8192,
        .max_body_bytes = (size_t)cfg->max_body_bytes,
        .header_timeout_ms = cfg->header_timeout_seconds * 1000,
        .idle_timeout_ms = cfg->idle_timeout_seconds * 1000,
        .handler = routes_handle,
        .observe = surge_metrics_observe_http,
        .on_conn_event = surge_metrics_conn_event,
        .ctx = &api,
    };
    struct admin_opts ao = {
        .address = cfg->bind_address,
        .port = cfg->admin_port,
        .health = health,
        .render_metrics = metrics_render,
        .observe = surge_metrics_observe_http,
        .on_conn_event = surge_metrics_conn_event,
    };
    if (http_server_start(&public_server, app.loop, &po) < 0 ||
        admin_start(&admin_server, app.loop, &ao) < 0) {
        log_error("start_failed", "cannot listen; exiting");
        return 1;
    }
    log_info("started", "surge-api ready: public %s:%d, admin %s:%d", cfg->bind_address,
             cfg->http_port, cfg->bind_address, cfg->admin_port);
    return app_run(&app);
}
