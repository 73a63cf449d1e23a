/* burn: CPU loop on its own thread, completion through uv_async_t. */
#include "burn.h"
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

struct burn {
    uv_thread_t thread;
    uv_async_t async;
    double seconds;
    volatile bool cancel;
    double wall, cpu;
    burn_done_fn done;
    void *arg;
};

static double thread_cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void burn_spin(double seconds, const volatile bool *cancel, double *wall, double *cpu)
{
    double t0 = util_mono_seconds(), c0 = thread_cpu_seconds();
    /* The job is an amount of work: `seconds` of CPU time, whatever else the
     * machine runs. A core shared with other work stretches the wall time, up
     * to a cap after which the burn gives up on the rest. */
    double wall_cap = seconds * BURN_WALL_CAP_FACTOR + 1.0;
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
        if (*cancel || thread_cpu_seconds() - c0 >= seconds ||
            util_mono_seconds() - t0 >= wall_cap)
            break;
    }
    *wall = util_mono_seconds() - t0;
    *cpu = thread_cpu_seconds() - c0;
}

static void run(void *arg)
{
    struct burn *b = arg;
    burn_spin(b->seconds, &b->cancel, &b->wall, &b->cpu);
    atomic_thread_fence(memory_order_release);
    uv_async_send(&b->async);
}

static void on_closed(uv_handle_t *h)
{
    struct burn *b = h->data;
    b->done(b->wall, b->cpu, b->cancel, b->arg);
    free(b);
}

static void on_finished(uv_async_t *a)
{
    struct burn *b = a->data;
    uv_thread_join(&b->thread);
    atomic_thread_fence(memory_order_acquire);
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
    b->cancel = true;
}
