/* Unit tests for worker/burn.c burn_spin: it spins until the CPU time asked
 * is used and reports wall and CPU seconds; a cancel flag stops it at once. */
#include "suites.h"

#include "../../worker/burn.h"

START_TEST(spin_for_the_time_asked)
{
    volatile bool cancel = false;
    double wall = -1, cpu = -1;
    burn_spin(0.2, &cancel, &wall, &cpu);
    ck_assert_double_ge(wall, 0.2);
    /* Either the CPU seconds were used, or the wall-time cap was reached. */
    ck_assert(cpu >= 0.2 || wall >= 0.2 * BURN_WALL_CAP_FACTOR + 1.0);
    /* CPU time of the spinning thread cannot exceed its wall time (the
     * margin covers clock granularity). */
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(zero_seconds_returns)
{
    volatile bool cancel = false;
    double wall = -1, cpu = -1;
    burn_spin(0.0, &cancel, &wall, &cpu);
    ck_assert_double_ge(wall, 0.0);
    ck_assert_double_ge(cpu, 0.0);
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

START_TEST(cancel_set_before_returns_at_once)
{
    volatile bool cancel = true;
    double wall = -1, cpu = -1;
    /* Asks for far longer than Check's per-test timeout allows. */
    burn_spin(60.0, &cancel, &wall, &cpu);
    ck_assert_double_ge(wall, 0.0);
    ck_assert_double_lt(wall, 60.0);
    ck_assert_double_ge(cpu, 0.0);
    ck_assert_double_le(cpu, wall + 0.05);
}
END_TEST

Suite *burn_suite(void)
{
    Suite *s = suite_create("burn");
    TCase *tc = tcase_create("spin");
    tcase_add_test(tc, spin_for_the_time_asked);
    tcase_add_test(tc, zero_seconds_returns);
    tcase_add_test(tc, cancel_set_before_returns_at_once);
    suite_add_tcase(s, tc);
    return s;
}
