/* burn: CPU loop on its own thread, completion through uv_async_t.
 * The loop thread and the burn thread share only the cancel flag (an atomic)
 * while the burn runs; the results are read after uv_thread_join. */
#include "burn.h"
#include "util.h"

#include <stdlib.h>
#include <time.h>

struct burn {
    uv_thread_t thread;
    uv_async_t async;
    double seconds;
    atomic_bool cancel; /* written by the loop thread, read by the burn thread */
    double wall, cpu;   /* written by the burn thread before it ends */
    enum burn_end end;
    burn_done_fn done;
    void *arg;
};

static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double burn_wall_cap(double seconds)
{
    return seconds * BURN_WALL_CAP_FACTOR + BURN_WALL_CAP_EXTRA;
}

enum burn_end burn_spin(double seconds, double wall_cap, const atomic_bool *cancel, double *wall,
                        double *cpu)
{
    double t0 = util_mono_seconds(), c0 = thread_cpu_seconds();
    /* The job is an amount of work: `seconds` of CPU time, whatever else the
     * machine runs. A core shared with other work stretches the wall time, up
     * to a cap after which the burn gives up on the rest. */
    enum burn_end end;
    /* Work the compiler cannot remove; the clocks are read every 4096 rounds
     * (a few microseconds), which keeps the overshoot negligible. */
    volatile uint64_t x = 88172645463325252ULL;
    for (;;) {
        for (int i = 0; i < 4096; i++) {
            uint64_t v = x;
            v ^= v << 13;
            v ^= v >> 7;
            v ^= v << 17;
            x = v;
        }
        if (atomic_load_explicit(cancel, memory_order_relaxed)) {
            end = BURN_CANCELLED;
            break;
        }
        if (thread_cpu_seconds() - c0 >= seconds) {
            end = BURN_DONE;
            break;
        }
        if (util_mono_seconds() - t0 >= wall_cap) {
            end = BURN_CAPPED;
            break;
        }
    }
    *wall = util_mono_seconds() - t0;
    *cpu = thread_cpu_seconds() - c0;
    return end;
}

static void run(void *arg)
{
    struct burn *b = arg;
    b->end = burn_spin(b->seconds, burn_wall_cap(b->seconds), &b->cancel, &b->wall, &b->cpu);
    uv_async_send(&b->async);
}

static void on_closed(uv_handle_t *h)
{
    struct burn *b = h->data;
    b->done(b->wall, b->cpu, b->end, b->arg);
    free(b);
}

static void on_finished(uv_async_t *a)
{
    struct burn *b = a->data;
    /* After the join every write of the burn thread is visible here. */
    uv_thread_join(&b->thread);
    uv_close((uv_handle_t *)&b->async, on_closed);
}

static void free_owner(uv_handle_t *h)
{
    free(h->data);
}

struct burn *burn_start(uv_loop_t *loop, double seconds, burn_done_fn done, void *arg)
{
    struct burn *b = xcalloc(1, sizeof *b);
    b->seconds = seconds;
    b->done = done;
    b->arg = arg;
    atomic_init(&b->cancel, false);
    uv_async_init(loop, &b->async, on_finished);
    b->async.data = b;
    if (uv_thread_create(&b->thread, run, b) != 0) {
        uv_close((uv_handle_t *)&b->async, free_owner);
        return NULL;
    }
    return b;
}

void burn_cancel(struct burn *b)
{
    atomic_store_explicit(&b->cancel, true, memory_order_relaxed);
}
