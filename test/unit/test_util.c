/* Unit tests for common/util.c (ISO 8601 time stamps, allocation helpers)
 * and common/buf.c (the growable buffer). */
#include "suites.h"

#include "buf.h"
#include "util.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- ISO 8601 ---- */

static const struct {
    int64_t ms;
    const char *text;
} stamps[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {1, "1970-01-01T00:00:00.001Z"},
    {999, "1970-01-01T00:00:00.999Z"},
    {1000, "1970-01-01T00:00:01.000Z"},
    {951782400000, "2000-02-29T00:00:00.000Z"},
    {1735689599999, "2024-12-31T23:59:59.999Z"},
    {1795635723123, "2026-11-25T19:42:03.123Z"},
    {4102444800000, "2100-01-01T00:00:00.000Z"},
    {253402300799999, "9999-12-31T23:59:59.999Z"},
};

START_TEST(iso8601_format_and_parse)
{
    char out[32];
    int64_t ms = -1;
    util_format_iso8601(stamps[_i].ms, out, sizeof out);
    ck_assert_str_eq(out, stamps[_i].text);
    ck_assert_int_eq(util_parse_iso8601(stamps[_i].text, &ms), 0);
    ck_assert_int_eq(ms, stamps[_i].ms);
}
END_TEST

START_TEST(iso8601_round_trip)
{
    /* Every millisecond value and a spread of days. */
    for (int64_t ms = 1700000000000; ms < 1700000000000 + 86400000LL * 400;
         ms += 86400000LL + 3601001) {
        char out[32];
        int64_t back = -1;
        util_format_iso8601(ms, out, sizeof out);
        ck_assert_uint_eq(strlen(out), 24);
        ck_assert_msg(util_parse_iso8601(out, &back) == 0, "%s refused", out);
        ck_assert_int_eq(back, ms);
    }
    for (int64_t ms = 1795635723000; ms < 1795635724000; ms++) {
        char out[32];
        int64_t back = -1;
        util_format_iso8601(ms, out, sizeof out);
        ck_assert_int_eq(util_parse_iso8601(out, &back), 0);
        ck_assert_int_eq(back, ms);
    }
}
END_TEST

START_TEST(iso8601_small_buffer)
{
    char out[11];
    memset(out, 'z', sizeof out);
    util_format_iso8601(0, out, sizeof out);
    ck_assert_str_eq(out, "1970-01-01");
}
END_TEST

/* What util_format_iso8601 must write, the slow way (ms >= 0). */
static void reference_iso8601(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    ck_assert_ptr_nonnull(gmtime_r(&secs, &tm));
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static void check_against_reference(int64_t ms)
{
    char got[32], want[96];
    memset(got, 'z', sizeof got);
    util_format_iso8601(ms, got, sizeof got);
    reference_iso8601(ms, want, sizeof want);
    ck_assert_msg(!strcmp(got, want), "%" PRId64 ": %s, expected %s", ms, got, want);
}

START_TEST(iso8601_across_second_boundaries)
{
    /* The formatted second is kept between calls: crossing into the next
     * second (and minute, hour, day, year), going back to an earlier one
     * and jumping far away must all change it. */
    static const int64_t around[] = {
        1795635723000,   /* 2026-11-25T19:42:03 */
        1795635779000,   /* 19:42:59 -> 19:43:00 */
        1795637999000,   /* 20:19:59 -> 20:20:00 */
        1798761599000,   /* 2026-12-31T23:59:59 -> 2027-01-01 */
        951868799000,    /* 2000-02-29T23:59:59 -> 2000-03-01 */
        0,
    };
    for (size_t k = 0; k < ARRAY_LEN(around); k++) {
        for (int64_t ms = around[k] >= 3 ? around[k] - 3 : 0; ms < around[k] + 2003; ms++)
            check_against_reference(ms);
        /* Back and forth between two seconds, one call each. */
        for (int i = 0; i < 50; i++) {
            check_against_reference(around[k] + 999);
            check_against_reference(around[k] + 1000);
            check_against_reference(around[k] + 998 - i);
        }
    }
    /* Far jumps: every call a different second, its milliseconds varying. */
    uint64_t x = 88172645463325252u;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        check_against_reference((int64_t)(x % 4102444800000u));
    }
}
END_TEST

/* Formats a run of stamps in its own range, checking each one. */
static void *format_many(void *arg)
{
    int64_t start = *(const int64_t *)arg;
    for (int64_t ms = start; ms < start + 20000; ms += 3) {
        char got[32], want[96];
        util_format_iso8601(ms, got, sizeof got);
        reference_iso8601(ms, want, sizeof want);
        if (strcmp(got, want) != 0)
            return (void *)1;
    }
    return NULL;
}

START_TEST(iso8601_from_several_threads)
{
    /* Log lines are stamped by the burn threads too: each thread keeps its
     * own second, so threads formatting different times do not mix them. */
    int64_t starts[4] = {1795635723000, 951868790000, 1798761590000, 4000};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, format_many, &starts[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *bad = (void *)1;
        ck_assert_int_eq(pthread_join(t[i], &bad), 0);
        ck_assert_msg(bad == NULL, "thread %d formatted a wrong stamp", i);
    }
}
END_TEST

START_TEST(iso8601_truncates_after_a_cached_second)
{
    /* The same second, formatted in full first, then into a short buffer. */
    char out[32], small[14];
    util_format_iso8601(1795635723123, out, sizeof out);
    ck_assert_str_eq(out, "2026-11-25T19:42:03.123Z");
    memset(small, 'z', sizeof small);
    util_format_iso8601(1795635723456, small, sizeof small);
    ck_assert_str_eq(small, "2026-11-25T19");
}
END_TEST

/* ---- integers in decimal ---- */

START_TEST(format_uint_matches_printf)
{
    uint64_t values[] = {0, 1, 9, 10, 11, 99, 100, 101, 202, 404, 999, 1000, 65535, 4294967295u,
                         4294967296u, 9999999999999999999u, 10000000000000000000u, UINT64_MAX};
    for (size_t k = 0; k < ARRAY_LEN(values); k++) {
        char got[UTIL_UINT_DIGITS + 8], want[32];
        memset(got, 'z', sizeof got);
        size_t n = util_format_uint(got, values[k]);
        snprintf(want, sizeof want, "%" PRIu64, values[k]);
        ck_assert_uint_eq(n, strlen(want));
        ck_assert_msg(!memcmp(got, want, n), "%s written as %.*s", want, (int)n, got);
        ck_assert_int_eq(got[n], 'z'); /* nothing past the digits */
    }
    /* Every power of ten and its neighbours. */
    for (uint64_t p = 1; p <= 1000000000000000000u; p *= 10) {
        for (uint64_t v = p - 1; v <= p + 1; v++) {
            char got[UTIL_UINT_DIGITS], want[32];
            size_t n = util_format_uint(got, v);
            snprintf(want, sizeof want, "%" PRIu64, v);
            ck_assert_uint_eq(n, strlen(want));
            ck_assert(!memcmp(got, want, n));
        }
    }
}
END_TEST

START_TEST(buf_append_uint_appends)
{
    struct buf b = {0};
    buf_append_uint(&b, 0);
    ck_assert_str_eq(b.data, "0");
    buf_puts(&b, " Content-Length: ");
    buf_append_uint(&b, 1234567);
    buf_append(&b, "\r\n", 2);
    buf_append_uint(&b, UINT64_MAX);
    ck_assert_str_eq(b.data, "0 Content-Length: 1234567\r\n18446744073709551615");
    ck_assert_uint_eq(b.len, strlen(b.data));
    buf_free(&b);
}
END_TEST

static const char *const bad_stamps[] = {
    "",
    "garbage",
    "2026-11-25",
    "2026-11-25T19:42:03Z",
    "2026-11-25T19:42:03.123",
    "2026-11-25 19:42:03.123Z",
    "2026-11-25T19:42:03.123Z ",
    "2026-11-25T19:42:03.123Zjunk",
    "2026-11-25T19:42:03.123+01:00",
    "2026/11/25T19:42:03.123Z",
    "2026-11-25T19-42-03.123Z",
    "2026-11-25T19:42:03,123Z",
    "2026-11-25T19:42:03.1234Z",
    "20261125T194203.123Z",
};

START_TEST(iso8601_refuses_malformed)
{
    int64_t ms = 777;
    ck_assert_msg(util_parse_iso8601(bad_stamps[_i], &ms) == -1, "\"%s\" accepted as %lld",
                  bad_stamps[_i], (long long)ms);
}
END_TEST

/* Lists in out each string of list that util_parse_iso8601 accepts. */
static void accepted_stamps(const char *const *list, size_t n, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t k = 0; k < n; k++) {
        int64_t ms;
        if (util_parse_iso8601(list[k], &ms) == 0) {
            size_t used = strlen(out);
            snprintf(out + used, outlen - used, " \"%s\"=%lld", list[k], (long long)ms);
        }
    }
}

START_TEST(iso8601_refuses_out_of_range_fields)
{
    /* A stamp that names no real instant must not be normalised into another one. */
    static const char *const stamps_out_of_range[] = {
        "2026-13-25T19:42:03.123Z", "2026-00-25T19:42:03.123Z", "2026-11-32T19:42:03.123Z",
        "2026-02-30T19:42:03.123Z", "2026-11-25T25:42:03.123Z", "2026-11-25T19:61:03.123Z",
    };
    char accepted[1024];
    accepted_stamps(stamps_out_of_range, ARRAY_LEN(stamps_out_of_range), accepted,
                    sizeof accepted);
    ck_assert_msg(accepted[0] == '\0', "accepted:%s", accepted);
}
END_TEST

START_TEST(iso8601_refuses_fields_of_the_wrong_width)
{
    /* Every field has a fixed width; ".5Z" must not read as 5 ms. */
    static const char *const stamps_wrong_width[] = {
        "2026-1-25T19:42:03.123Z",  "2026-11-25T19:42:03.5Z",   " 2026-11-25T19:42:03.123Z",
        "2026-+1-25T19:42:03.123Z", "2026-11-25T19:42:03.-12Z",
    };
    char accepted[1024];
    accepted_stamps(stamps_wrong_width, ARRAY_LEN(stamps_wrong_width), accepted,
                    sizeof accepted);
    ck_assert_msg(accepted[0] == '\0', "accepted:%s", accepted);
}
END_TEST

START_TEST(strdup_helpers)
{
    char *s = xstrdup("surge");
    ck_assert_str_eq(s, "surge");
    free(s);
    s = xstrndup("surge:queue", 5);
    ck_assert_str_eq(s, "surge");
    free(s);
    s = xstrndup("", 0);
    ck_assert_str_eq(s, "");
    free(s);
    char *z = xcalloc(4, 8);
    for (int k = 0; k < 32; k++)
        ck_assert_int_eq(z[k], 0);
    z = xrealloc(z, 64);
    ck_assert_int_eq(z[31], 0);
    free(z);
}
END_TEST

/* ---- buf ---- */

START_TEST(buf_append_grows)
{
    struct buf b = {0};
    for (int k = 0; k < 1000; k++) {
        buf_append(&b, "0123456789", 10);
        ck_assert_uint_eq(b.len, (size_t)(k + 1) * 10);
        ck_assert_uint_gt(b.cap, b.len);
        ck_assert_int_eq(b.data[b.len], '\0');
    }
    for (int k = 0; k < 1000; k++)
        ck_assert_mem_eq(b.data + k * 10, "0123456789", 10);
    buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    /* Usable again after free. */
    buf_puts(&b, "again");
    ck_assert_str_eq(b.data, "again");
    buf_free(&b);
}
END_TEST

START_TEST(buf_append_nothing)
{
    struct buf b = {0};
    buf_append(&b, NULL, 0);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_str_eq(b.data, "");
    ck_assert_uint_eq(b.len, 0);
    buf_append(&b, "a\0b", 3);
    ck_assert_uint_eq(b.len, 3);
    ck_assert_mem_eq(b.data, "a\0b", 4);
    buf_free(&b);
}
END_TEST

START_TEST(buf_printf_past_256_bytes)
{
    struct buf b = {0};
    char big[1001];
    memset(big, 'x', 1000);
    big[1000] = '\0';
    buf_printf(&b, "<%d>", 42);
    ck_assert_str_eq(b.data, "<42>");
    /* Exactly at and past the 256-byte stack buffer. */
    buf_printf(&b, "%.255s", big);
    ck_assert_uint_eq(b.len, 4 + 255);
    buf_printf(&b, "%.256s", big);
    ck_assert_uint_eq(b.len, 4 + 255 + 256);
    buf_printf(&b, "[%s]", big);
    ck_assert_uint_eq(b.len, 4 + 255 + 256 + 1002);
    ck_assert_int_eq(b.data[b.len], '\0');
    ck_assert_uint_eq(strlen(b.data), b.len);
    ck_assert_int_eq(b.data[4 + 255 + 256], '[');
    ck_assert_int_eq(b.data[b.len - 1], ']');
    for (size_t k = 4; k < b.len - 1; k++)
        if (k != 4 + 255 + 256)
            ck_assert_int_eq(b.data[k], 'x');
    buf_free(&b);

    /* Growth on an empty buffer straight to a long line. */
    buf_printf(&b, "%0600d", 7);
    ck_assert_uint_eq(b.len, 600);
    ck_assert_int_eq(b.data[599], '7');
    ck_assert_int_eq(b.data[0], '0');
    ck_assert_int_eq(b.data[600], '\0');
    buf_free(&b);
}
END_TEST

START_TEST(consume_drops_the_front)
{
    struct buf b = {0};
    buf_puts(&b, "hello world");
    buf_consume(&b, 6);
    ck_assert_str_eq(b.data, "world");
    ck_assert_uint_eq(b.len, 5);
    buf_consume(&b, 0);
    ck_assert_str_eq(b.data, "world");
    buf_consume(&b, 5);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(b.data, "");
    buf_puts(&b, "abc");
    buf_consume(&b, 100);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(b.data, "");
    buf_free(&b);
    /* On an empty, never-allocated buffer. */
    buf_consume(&b, 3);
    ck_assert_uint_eq(b.len, 0);
    buf_free(&b);
}
END_TEST

START_TEST(buf_reserve_then_write)
{
    struct buf b = {0};
    buf_puts(&b, "ab");
    char *p = buf_reserve(&b, 1000);
    ck_assert_ptr_eq(p, b.data + 2);
    ck_assert_uint_ge(b.cap, 2 + 1000 + 1);
    memset(p, 'z', 1000);
    b.len += 1000;
    buf_puts(&b, "!");
    ck_assert_uint_eq(b.len, 1003);
    ck_assert_int_eq(b.data[0], 'a');
    ck_assert_int_eq(b.data[1001], 'z');
    ck_assert_str_eq(b.data + 1002, "!");
    /* A reserve that fits keeps the memory where it is. */
    char *before = b.data;
    size_t room = b.cap - b.len - 1;
    ck_assert_ptr_eq(buf_reserve(&b, room), before + b.len);
    ck_assert_ptr_eq(b.data, before);
    buf_free(&b);
}
END_TEST

START_TEST(buf_reset_keeps_memory)
{
    struct buf b = {0};
    buf_puts(&b, "some text");
    char *mem = b.data;
    size_t cap = b.cap;
    buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(b.data, "");
    ck_assert_ptr_eq(b.data, mem);
    ck_assert_uint_eq(b.cap, cap);
    buf_free(&b);
    buf_reset(&b);
    ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(steal_hands_over_the_memory)
{
    struct buf b = {0};
    buf_puts(&b, "owned by the caller");
    char *s = buf_steal(&b);
    ck_assert_str_eq(s, "owned by the caller");
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_eq(b.cap, 0);
    free(s);
    /* An empty buffer gives an empty string the caller can free. */
    s = buf_steal(&b);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_ptr_null(b.data);
    buf_puts(&b, "x");
    ck_assert_str_eq(b.data, "x");
    buf_free(&b);
}
END_TEST

Suite *util_suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("iso8601");
    tcase_add_loop_test(tc, iso8601_format_and_parse, 0, (int)ARRAY_LEN(stamps));
    tcase_add_test(tc, iso8601_round_trip);
    tcase_add_test(tc, iso8601_small_buffer);
    tcase_add_test(tc, iso8601_across_second_boundaries);
    tcase_add_test(tc, iso8601_from_several_threads);
    tcase_add_test(tc, iso8601_truncates_after_a_cached_second);
    tcase_add_loop_test(tc, iso8601_refuses_malformed, 0, (int)ARRAY_LEN(bad_stamps));
    tcase_add_test(tc, iso8601_refuses_out_of_range_fields);
    tcase_add_test(tc, iso8601_refuses_fields_of_the_wrong_width);
    suite_add_tcase(s, tc);
    tc = tcase_create("alloc");
    tcase_add_test(tc, strdup_helpers);
    suite_add_tcase(s, tc);
    tc = tcase_create("decimal");
    tcase_add_test(tc, format_uint_matches_printf);
    suite_add_tcase(s, tc);
    return s;
}

Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("buf");
    tcase_add_test(tc, buf_append_grows);
    tcase_add_test(tc, buf_append_nothing);
    tcase_add_test(tc, buf_printf_past_256_bytes);
    tcase_add_test(tc, consume_drops_the_front);
    tcase_add_test(tc, buf_reserve_then_write);
    tcase_add_test(tc, buf_reset_keeps_memory);
    tcase_add_test(tc, steal_hands_over_the_memory);
    tcase_add_test(tc, buf_append_uint_appends);
    suite_add_tcase(s, tc);
    return s;
}
