/* health: readiness of the components a binary depends on. Each component
 * has a probe, run every second; /readyz shows the latest results. */
#ifndef SURGE_HEALTH_H
#define SURGE_HEALTH_H

#include "buf.h"

#include <stdbool.h>
#include <uv.h>

#define HEALTH_MAX_COMPONENTS 4

struct health;

/* Starts a check of component idx; it must end in one health_report(). */
typedef void (*health_probe_fn)(struct health *h, int idx, void *arg);

struct health *health_create(uv_loop_t *loop);
/* Adds a component ("redis", "postgres"); returns its index. */
int health_add(struct health *h, const char *name, health_probe_fn probe, void *arg);
/* Records a result; detail (may be NULL) says why it is down. */
void health_report(struct health *h, int idx, bool ok, double latency_ms, const char *detail);
/* Runs every probe now (a dependency just came back), not at the next tick. */
void health_check_now(struct health *h);
/* From now on the binary is shutting down: not ready, whatever the checks say. */
void health_set_shutting_down(struct health *h);
/* True if every component is ok and no shutdown started. */
bool health_ready(const struct health *h);
/* True if the named component's last check was ok. */
bool health_component_ok(const struct health *h, int idx);
/* Writes {"status":"ok"|"unavailable","checks":{...}}. */
void health_render(const struct health *h, struct buf *out);
/* Stops the timer; done(arg) once it is closed and h is freed. */
void health_close(struct health *h, void (*done)(void *), void *arg);

#endif
