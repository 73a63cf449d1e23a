/* burn: a CPU loop on a thread of its own, so the worker's event loop
 * (health answers, heartbeats, other jobs) stays responsive while it runs. */
#ifndef SURGE_BURN_H
#define SURGE_BURN_H

#include <stdbool.h>
#include <uv.h>

struct burn;

/* Called on the loop thread when the burn ends: the wall and CPU seconds it
 * used, and whether it was cancelled before its time. */
typedef void (*burn_done_fn)(double wall_seconds, double cpu_seconds, bool cancelled, void *arg);

/* A burn starved of CPU stops after this many times its seconds of wall time. */
#define BURN_WALL_CAP_FACTOR 3.0

/* Starts burning one core until the thread has used seconds of CPU time. Returns NULL if no thread could be
 * made (the caller fails the job). */
struct burn *burn_start(uv_loop_t *loop, double seconds, burn_done_fn done, void *arg);
/* Asks the thread to stop soon; done still comes, with cancelled = true. */
void burn_cancel(struct burn *b);

/* The loop itself, exposed for tests: spins until the thread has used
 * seconds of CPU time (or BURN_WALL_CAP_FACTOR times that in wall time has
 * passed, or *cancel becomes true); reports wall and thread CPU seconds. */
void burn_spin(double seconds, const volatile bool *cancel, double *wall, double *cpu);

#endif
