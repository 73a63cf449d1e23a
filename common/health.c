/* health: periodic probes of dependencies, rendered by /readyz. */
#include "health.h"
#include "json_writer.h"
#include "log.h"
#include "surge_metrics.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>

#define PROBE_EVERY_MS 1000
/* A probe that has not answered for this long counts as down. */
#define STALE_SECONDS 3.0

struct component {
    const char *name;
    health_probe_fn probe;
    void *arg;
    bool running;
    bool ok;
    double started;
    double latency_ms;
    char detail[192];
};

struct health {
    uv_timer_t timer;
    struct component c[HEALTH_MAX_COMPONENTS];
    int n;
    bool shutting_down;
    void (*done)(void *);
    void *done_arg;
};

static void run_probes(uv_timer_t *t)
{
    struct health *h = t->data;
    double now = util_mono_seconds();
    for (int i = 0; i < h->n; i++) {
        struct component *c = &h->c[i];
        if (c->running) {
            if (now - c->started > STALE_SECONDS && c->ok) {
                c->ok = false;
                snprintf(c->detail, sizeof c->detail, "no answer for %.0f s", STALE_SECONDS);
            }
            continue;
        }
        c->running = true;
        c->started = now;
        c->probe(h, i, c->arg);
    }
}

struct health *health_create(uv_loop_t *loop)
{
    struct health *h = xcalloc(1, sizeof *h);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_start(&h->timer, run_probes, 0, PROBE_EVERY_MS);
    return h;
}

void health_check_now(struct health *h)
{
    run_probes(&h->timer);
}

int health_add(struct health *h, const char *name, health_probe_fn probe, void *arg)
{
    if (h->n >= HEALTH_MAX_COMPONENTS)
        abort();
    struct component *c = &h->c[h->n];
    c->name = name;
    c->probe = probe;
    c->arg = arg;
    snprintf(c->detail, sizeof c->detail, "not checked yet");
    return h->n++;
}

void health_report(struct health *h, int idx, bool ok, double latency_ms, const char *detail)
{
    struct component *c = &h->c[idx];
    if (c->ok != ok)
        log_msg(ok ? LOG_INFO : LOG_WARN, ok ? "dependency_up" : "dependency_down", "%s%s%s",
                c->name, detail ? ": " : "", detail ? detail : "");
    c->running = false;
    c->ok = ok;
    if (sm.dependency_up) {
        const char *labels[] = {c->name};
        metrics_set(sm.dependency_up, labels, ok ? 1 : 0);
    }
    c->latency_ms = latency_ms;
    snprintf(c->detail, sizeof c->detail, "%s", detail ? detail : "");
}

void health_set_shutting_down(struct health *h)
{
    h->shutting_down = true;
}

bool health_component_ok(const struct health *h, int idx)
{
    return h->c[idx].ok;
}

bool health_ready(const struct health *h)
{
    if (h->shutting_down)
        return false;
    for (int i = 0; i < h->n; i++)
        if (!h->c[i].ok)
            return false;
    return true;
}

void health_render(const struct health *h, struct buf *out)
{
    struct json_writer w;
    jw_init(&w, out);
    jw_object_begin(&w);
    jw_key_string(&w, "status",
                  h->shutting_down ? "shutting_down" : health_ready(h) ? "ok" : "unavailable");
    jw_key(&w, "checks");
    jw_object_begin(&w);
    for (int i = 0; i < h->n; i++) {
        const struct component *c = &h->c[i];
        jw_key(&w, c->name);
        jw_object_begin(&w);
        jw_key_string(&w, "status", c->ok ? "ok" : "down");
        jw_key(&w, "latency_ms");
        jw_double(&w, c->latency_ms, 2);
        if (!c->ok)
            jw_key_string(&w, "error", c->detail);
        jw_object_end(&w);
    }
    jw_object_end(&w);
    jw_object_end(&w);
}

static void on_closed(uv_handle_t *handle)
{
    struct health *h = handle->data;
    void (*done)(void *) = h->done;
    void *arg = h->done_arg;
    free(h);
    if (done)
        done(arg);
}

void health_close(struct health *h, void (*done)(void *), void *arg)
{
    h->done = done;
    h->done_arg = arg;
    uv_close((uv_handle_t *)&h->timer, on_closed);
}
