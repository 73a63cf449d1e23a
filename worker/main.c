/* surge-worker: takes job ids off the Redis queue of each type and runs
 * them: burns on threads, at most SURGE_WORKER_BURN_CONCURRENCY at once;
 * reads on the PostgreSQL pool, at most SURGE_WORKER_READ_CONCURRENCY.
 * Modules: fetcher.c, runner.c, handlers.c (read, burn), upkeep.c,
 * pg_pool.c; admin port from common/admin.c. */
#include "admin.h"
#include "log.h"
#include "surge_metrics.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct app app;
static struct worker worker;
static struct http_server *admin_server;
static bool closing;

static void on_redis_state(struct rc *rc, bool up, void *arg)
{
    (void)rc;
    struct worker *w = arg;
    if (w->health)
        health_check_now(w->health);
    if (up)
        w->redis_up_since = util_mono_seconds();
    if (up && !w->stopping)
        upkeep_now(w);
    fetcher_kick(w); /* logs the pause, or takes jobs again */
}

/* The first PostgreSQL connection is ready, or the last one is gone. */
static void on_postgres_state(bool up, void *arg)
{
    struct worker *w = arg;
    (void)up;
    if (w->health)
        health_check_now(w->health);
    fetcher_kick(w);
}

/* Health of PostgreSQL: ready when at least one connection is open. The
 * latency is that of a real query on a free connection. */
struct pg_probe {
    struct health *h;
    int idx;
    double started;
};

static void on_pg_probe(PGresult *res, const char *err, void *arg)
{
    struct pg_probe *p = arg;
    double ms = (util_mono_seconds() - p->started) * 1000.0;
    if (!res)
        health_report(p->h, p->idx, false, ms, err);
    else if (PQresultStatus(res) != PGRES_TUPLES_OK)
        health_report(p->h, p->idx, false, ms, PQresultErrorMessage(res));
    else
        health_report(p->h, p->idx, true, ms, NULL);
    free(p);
}

static void probe_postgres(struct health *h, int idx, void *arg)
{
    struct worker *w = arg;
    if (pg_pool_ready(w->pg) == 0) {
        /* Readiness says why no read job is taken (fetcher.c). */
        char why[192];
        snprintf(why, sizeof why, "taking no read job: no connection open (last error: %s)",
                 pg_pool_last_error(w->pg));
        health_report(h, idx, false, 0, why);
        return;
    }
    struct pg_probe *p = xmalloc(sizeof *p);
    p->h = h;
    p->idx = idx;
    p->started = util_mono_seconds();
    const char *values[] = {"0"};
    pg_pool_exec(w->pg, "item_by_id", 1, values, on_pg_probe, p);
}

static void close_all(void)
{
    if (closing)
        return;
    closing = true;
    struct worker *w = &worker;
    upkeep_stop(w);
    surge_metrics_stop();
    uv_close((uv_handle_t *)&w->last_call, NULL);
    /* Connections first: their pending probes report to health before it closes. */
    fetcher_close(w);
    runner_close(w);
    rc_close(w->redis, NULL, NULL);
    pg_pool_close(w->pg, NULL, NULL);
    health_close(w->health, NULL, NULL);
    http_server_shutdown(admin_server, NULL, NULL);
    buf_free(&w->processing);
    buf_free(&w->heartbeat);
    app_stopped(&app);
}

static void on_goodbye(redisReply *reply, const char *err, void *arg)
{
    (void)reply;
    (void)err;
    (void)arg;
    close_all();
}

void worker_maybe_exit(struct worker *w)
{
    if (!w->stopping || w->in_flight > 0 || fetcher_outstanding(w) || w->exiting)
        return;
    w->exiting = true;
    log_info("drained", "no job left in hand");
    /* Say goodbye at once rather than letting the heartbeat expire. */
    upkeep_goodbye(w, on_goodbye, NULL);
}

static double cfg_grace_ms(const struct worker *w)
{
    return w->cfg->shutdown_grace_seconds * 1000.0;
}

static void on_last_call(uv_timer_t *t)
{
    runner_last_call(t->data);
}

static void on_stop(struct app *a)
{
    (void)a;
    struct worker *w = &worker;
    w->stopping = true;
    w->stop_started = util_mono_seconds();
    health_set_shutting_down(w->health);
    fetcher_stop(w);
    /* Burns slowed by a shared core may still run near the end of the grace
     * period: they are put back then, rather than left to be recovered. */
    double last = cfg_grace_ms(w) - 2000.0;
    uv_timer_start(&w->last_call, on_last_call, last > 0 ? (uint64_t)last : 0, 0);
    runner_drain(w);
    worker_maybe_exit(w);
}

static void on_grace_over(struct app *a)
{
    (void)a;
    /* Whatever we still hold stays in our processing list; once our heartbeat
     * expires another worker puts it back on the queue. */
    log_error("shutdown_forced", "%d job(s) still in hand; they will be recovered",
              worker.in_flight);
    exit(1);
}

int main(void)
{
    app.on_stop = on_stop;
    app.on_grace_over = on_grace_over;
    app_init(&app, "surge-worker");
    const struct cfg *cfg = &app.cfg;
    struct worker *w = &worker;
    w->app = &app;
    w->cfg = cfg;
    w->loop = app.loop;
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    snprintf(w->name, sizeof w->name, "%s-%d", host, (int)getpid());
    key_processing(&w->processing, w->name);
    key_heartbeat(&w->heartbeat, w->name);
    srand((unsigned)getpid() ^ (unsigned)util_now_ms());

    struct rc_opts ro = app_redis_opts(&app, "redis", on_redis_state, w);
    surge_metrics_init(SURGE_ROLE_WORKER);
    w->redis = rc_create(w->loop, &ro);
    surge_metrics_watch_queue(w->loop, w->redis);
    runner_init(w);
    fetcher_init(w, &app);
    /* A read holds one connection while it runs: as many as reads at once. */
    w->pg = pg_pool_create(w->loop, cfg->pg_dsn, cfg->read_concurrency, handler_statements,
                           handler_statement_count, cfg->job_timeout_seconds * 1000);
    pg_pool_on_ready(w->pg, on_postgres_state, w);
    uv_timer_init(w->loop, &w->last_call);
    w->last_call.data = w;

    w->health = health_create(w->loop);
    health_add(w->health, "redis", admin_probe_redis, w->redis);
    w->pg_health_idx = health_add(w->health, "postgres", probe_postgres, w);
    struct admin_opts ao = {
        .address = cfg->bind_address,
        .port = cfg->admin_port,
        .health = w->health,
        .render_metrics = metrics_render,
        .observe = surge_metrics_observe_http,
        .on_conn_event = surge_metrics_conn_event,
    };
    if (admin_start(&admin_server, w->loop, &ao) < 0) {
        log_error("start_failed", "cannot listen on the admin port; exiting");
        return 1;
    }
    upkeep_start(w);
    log_info("started", "surge-worker %s: burn concurrency %d, read concurrency %d, admin %s:%d",
             w->name, cfg->burn_concurrency, cfg->read_concurrency, cfg->bind_address,
             cfg->admin_port);
    return app_run(&app);
}
