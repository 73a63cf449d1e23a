/* burn: a CPU loop on a thread of its own, so the worker's event loop
 * (health answers, heartbeats, other jobs) stays responsive while it runs. */
#ifndef SURGE_BURN_H
#define SURGE_BURN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <uv.h>

struct burn;

/* How a burn ended. */
enum burn_end {
    BURN_DONE,      /* it used the CPU seconds it was asked for */
    BURN_CANCELLED, /* burn_cancel() stopped it */
    BURN_CAPPED,    /* starved of CPU: the wall-clock cap came first */
};

/* Called on the loop thread when the burn ends: the wall and CPU seconds it
 * used, and how it ended. */
typedef void (*burn_done_fn)(double wall_seconds, double cpu_seconds, enum burn_end end,
                             void *arg);

/* A burn starved of CPU stops after this many times its seconds of wall time,
 * plus BURN_WALL_CAP_EXTRA seconds: burn_wall_cap(seconds). Generous on
 * purpose: a burn stopped short throws its work away and is retried, which on
 * a machine already overloaded only adds load; the cap bounds how long a
 * starved burn holds its slot (a CPU-throttled container, a stopped process),
 * it does not shape the load. */
#define BURN_WALL_CAP_FACTOR 10.0
#define BURN_WALL_CAP_EXTRA 2.0
double burn_wall_cap(double seconds);

/* Starts burning one core until the thread has used seconds of CPU time. Returns NULL if no thread could be
 * made (the caller fails the job). */
struct burn *burn_start(uv_loop_t *loop, double seconds, burn_done_fn done, void *arg);
/* Asks the thread to stop soon (from the loop thread); done still comes,
 * with BURN_CANCELLED. */
void burn_cancel(struct burn *b);

/* The loop itself, exposed for tests: spins until the thread has used
 * seconds of CPU time, or wall_cap seconds of wall time have passed, or
 * *cancel becomes true (it may be set from another thread); reports wall and
 * thread CPU seconds and says which came first. */
enum burn_end burn_spin(double seconds, double wall_cap, const atomic_bool *cancel, double *wall,
                        double *cpu);

#endif
