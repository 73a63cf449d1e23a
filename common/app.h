/* app: what both binaries do around their own work — configuration and
 * logging at start, SIGTERM/SIGINT through libuv, a grace period for the
 * drain, and a clean loop close at the end. */
#ifndef SURGE_APP_H
#define SURGE_APP_H

#include "config.h"
#include "redis_client.h"

#include <stdbool.h>
#include <uv.h>

struct app {
    const char *name;
    uv_loop_t *loop;
    struct cfg cfg;
    bool stopping;
    uv_signal_t sigterm, sigint;
    uv_timer_t grace;
    /* Called once on the first SIGTERM/SIGINT: start draining, and call
     * app_stopped() when everything the binary opened is closed. */
    void (*on_stop)(struct app *app);
    /* Called when the grace period is over and the drain is not done. */
    void (*on_grace_over)(struct app *app);
};

/* Loads the configuration (exit 2 on a bad value), sets up logging, key
 * names and signal handling. */
void app_init(struct app *app, const char *name);
/* The options of a Redis connection as configured (SURGE_REDIS_*). */
struct rc_opts app_redis_opts(const struct app *app, const char *name, rc_state_fn on_state,
                              void *state_arg);
/* Runs the loop until everything is closed; returns the exit status. */
int app_run(struct app *app);
/* Closes the app's own handles; the loop then ends once the binary's are closed. */
void app_stopped(struct app *app);

#endif
