/* app: start-up and shutdown shared by surge-api and surge-worker. */
#include "app.h"
#include "job.h"
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static void on_grace_over(uv_timer_t *t)
{
    struct app *app = t->data;
    log_warn("shutdown_grace_over", "the %d s grace period is over",
             app->cfg.shutdown_grace_seconds);
    if (app->on_grace_over)
        app->on_grace_over(app);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct app *app = s->data;
    if (app->stopping) {
        log_info("shutdown_in_progress", "signal %d again: already draining", signum);
        return;
    }
    app->stopping = true;
    log_info("shutdown_started", "signal %d: draining (grace %d s)", signum,
             app->cfg.shutdown_grace_seconds);
    uv_timer_start(&app->grace, on_grace_over, (uint64_t)app->cfg.shutdown_grace_seconds * 1000,
                   0);
    app->on_stop(app);
}

void app_init(struct app *app, const char *name)
{
    app->name = name;
    cfg_load_or_exit(&app->cfg, name);
    log_setup(name, app->cfg.log_level, app->cfg.log_format);
    keys_set_prefix(app->cfg.key_prefix);
    /* A peer that closes while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    app->loop = uv_default_loop();
    uv_signal_init(app->loop, &app->sigterm);
    uv_signal_init(app->loop, &app->sigint);
    uv_timer_init(app->loop, &app->grace);
    app->sigterm.data = app->sigint.data = app->grace.data = app;
    uv_signal_start(&app->sigterm, on_signal, SIGTERM);
    uv_signal_start(&app->sigint, on_signal, SIGINT);
}

void app_stopped(struct app *app)
{
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->grace, NULL);
}

struct rc_opts app_redis_opts(const struct app *app, const char *name, rc_state_fn on_state,
                              void *state_arg)
{
    const struct cfg *cfg = &app->cfg;
    struct rc_opts o = {
        .name = name,
        .host = cfg->redis_host,
        .port = cfg->redis_port,
        .db = cfg->redis_db,
        .username = cfg->redis_username,
        .password = cfg->redis_password,
        .timeout_ms = cfg->redis_timeout_ms,
        .on_state = on_state,
        .state_arg = state_arg,
    };
    return o;
}

static void report_open_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    log_error("handle_left_open", "%s", uv_handle_type_name(h->type));
}

int app_run(struct app *app)
{
    uv_run(app->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(app->loop);
    if (rc != 0) {
        uv_walk(app->loop, report_open_handle, NULL);
        log_error("loop_not_closed", "%s", uv_strerror(rc));
    }
    log_info("stopped", "%s exits", app->name);
    cfg_free(&app->cfg);
    return rc == 0 ? 0 : 1;
}
