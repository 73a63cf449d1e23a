/* Unit tests for worker/burn.c: burn_spin spins until the CPU time asked is
 * used and reports wall and CPU seconds; a cancel flag stops it at once; the
 * wall-clock cap ends it as BURN_CAPPED, never as done. burn_start on a real
 * libuv loop, cancelled from the loop thread (ThreadSanitizer runs this one:
 * make test-tsan). */
#include "suites.h"

#include "../../worker/burn.h"

START_TEST(spin_for_the_time_asked)
{
    atomic_bool cancel = false;
    double wall = -1, cpu = -1;
    enum burn_end end = burn_spin(0.2, burn_wall_cap(0.2), &cancel, &wall, &cpu);
    ck_assert_double_ge(wall, 0.2);
    /* Either the CPU seconds were used, or the wall-time cap was reached. */
    if (end == BURN_DONE)
        ck_assert_double_ge(cpu, 0.2);
    else
        ck_assert(end == BURN_CAPPED && wall >= burn_wall_cap(0.2));
    /* CPU time of the spinning thread cannot exceed its wall time (the
     * margin covers clock granularity). */
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(zero_seconds_returns)
{
    atomic_bool cancel = false;
    double wall = -1, cpu = -1;
    ck_assert_int_eq(burn_spin(0.0, burn_wall_cap(0.0), &cancel, &wall, &cpu), BURN_DONE);
    ck_assert_double_ge(wall, 0.0);
    ck_assert_double_ge(cpu, 0.0);
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(cancel_set_before_returns_at_once)
{
    atomic_bool cancel = true;
    double wall = -1, cpu = -1;
    /* Asks for far longer than Check's per-test timeout allows. */
    ck_assert_int_eq(burn_spin(60.0, burn_wall_cap(60.0), &cancel, &wall, &cpu), BURN_CANCELLED);
    ck_assert_double_ge(wall, 0.0);
    ck_assert_double_lt(wall, 60.0);
    ck_assert_double_ge(cpu, 0.0);
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(wall_cap_ends_as_capped_not_done)
{
    atomic_bool cancel = false;
    double wall = -1, cpu = -1;
    /* A cap already over: the CPU seconds can never be used first. */
    ck_assert_int_eq(burn_spin(60.0, 0.0, &cancel, &wall, &cpu), BURN_CAPPED);
    ck_assert_double_lt(cpu, 60.0);
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(wall_cap_is_ten_times_plus_two)
{
    ck_assert_double_eq(burn_wall_cap(2.0), 22.0);
    ck_assert_double_eq(burn_wall_cap(0.0), 2.0);
}
END_TEST

/* ---- a burn on its thread, cancelled from the loop ---- */

struct outcome {
    int calls;
    enum burn_end end;
    double wall, cpu;
};

static void on_done(double wall, double cpu, enum burn_end end, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->end = end;
    o->wall = wall;
    o->cpu = cpu;
}

static void cancel_it(uv_timer_t *t)
{
    burn_cancel(t->data);
    uv_close((uv_handle_t *)t, NULL);
}

START_TEST(cancel_from_the_loop_thread)
{
    uv_loop_t loop;
    uv_timer_t timer;
    struct outcome o = {0};
    ck_assert_int_eq(uv_loop_init(&loop), 0);
    /* 60 s of CPU: only the cancel can end it within Check's timeout. */
    struct burn *b = burn_start(&loop, 60.0, on_done, &o);
    ck_assert_ptr_nonnull(b);
    uv_timer_init(&loop, &timer);
    timer.data = b;
    uv_timer_start(&timer, cancel_it, 50, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_int_eq(o.end, BURN_CANCELLED);
    ck_assert_double_ge(o.cpu, 0.0);
    ck_assert_double_le(o.cpu, o.wall + 0.05);
    ck_assert_int_eq(uv_loop_close(&loop), 0);
}
END_TEST

Suite *burn_suite(void)
{
    Suite *s = suite_create("burn");
    TCase *tc = tcase_create("spin");
    tcase_add_test(tc, spin_for_the_time_asked);
    tcase_add_test(tc, zero_seconds_returns);
    tcase_add_test(tc, cancel_set_before_returns_at_once);
    tcase_add_test(tc, wall_cap_ends_as_capped_not_done);
    tcase_add_test(tc, wall_cap_is_ten_times_plus_two);
    suite_add_tcase(s, tc);
    tc = tcase_create("thread");
    tcase_add_test(tc, cancel_from_the_loop_thread);
    suite_add_tcase(s, tc);
    return s;
}
