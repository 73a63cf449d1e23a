/* util: allocation that aborts on failure, time helpers, integers in decimal. */
#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static void out_of_memory(size_t n)
{
    fprintf(stderr, "surge: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        out_of_memory(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

size_t util_raise_fd_limit(size_t want)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rlim_t to = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? (rlim_t)want : rl.rlim_max;
        struct rlimit raised = {to, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = to;
    }
    return rl.rlim_cur == RLIM_INFINITY ? SIZE_MAX : (size_t)rl.rlim_cur;
}

int64_t util_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double util_mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

size_t util_format_uint(char *out, uint64_t v)
{
    char tmp[UTIL_UINT_DIGITS];
    size_t n = 0;
    do {
        tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(out, tmp + sizeof tmp - n, n);
    return n;
}

#define ISO8601_LEN 24 /* "2026-11-25T19:42:03.123Z" */

/* Writes v as exactly n digits, zero-padded (v < 10^n). */
static void fixed_digits(char *out, int v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        out[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

void util_format_iso8601(int64_t ms, char *out, size_t outlen)
{
    /* The second last formatted by this thread (log lines come from the
     * burn threads too), "YYYY-MM-DDTHH:MM:SS." up to the milliseconds. */
    static _Thread_local int64_t cached_secs = INT64_MIN;
    static _Thread_local char cached[ISO8601_LEN];
    int64_t secs = ms / 1000;
    int millis = (int)(ms % 1000);
    if (millis < 0) { /* before 1970: floor, as gmtime counts */
        millis += 1000;
        secs--;
    }
    if (secs != cached_secs) {
        time_t t = (time_t)secs;
        struct tm tm = {0};
        if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999) {
            /* Outside four-digit years: rare, printed the slow way. */
            snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
            return;
        }
        fixed_digits(cached, tm.tm_year + 1900, 4);
        cached[4] = '-';
        fixed_digits(cached + 5, tm.tm_mon + 1, 2);
        cached[7] = '-';
        fixed_digits(cached + 8, tm.tm_mday, 2);
        cached[10] = 'T';
        fixed_digits(cached + 11, tm.tm_hour, 2);
        cached[13] = ':';
        fixed_digits(cached + 14, tm.tm_min, 2);
        cached[16] = ':';
        fixed_digits(cached + 17, tm.tm_sec, 2);
        cached[19] = '.';
        cached[23] = 'Z';
        cached_secs = secs;
    }
    char text[ISO8601_LEN];
    memcpy(text, cached, sizeof text);
    fixed_digits(text + 20, millis, 3);
    if (outlen == 0)
        return;
    size_t n = outlen - 1 < sizeof text ? outlen - 1 : sizeof text;
    memcpy(out, text, n);
    out[n] = '\0';
}

/* Reads exactly n digits; -1 if any is not a digit. */
static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return month == 2 && leap ? 29 : days[month - 1];
}

int util_parse_iso8601(const char *s, int64_t *ms)
{
    /* Exactly "YYYY-MM-DDTHH:MM:SS.mmmZ", as util_format_iso8601 writes. */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (strlen(s) != sizeof shape - 1)
        return -1;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] != 'd' && s[i] != shape[i])
            return -1;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
    int millis = digits(s + 20, 3);
    if (year < 1970 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 ||
        min > 59 || sec < 0 || sec > 59 || millis < 0 || day > days_in_month(year, month))
        return -1;
    struct tm tm = {0};
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    time_t secs = timegm(&tm);
    if (secs == (time_t)-1)
        return -1;
    *ms = (int64_t)secs * 1000 + millis;
    return 0;
}
