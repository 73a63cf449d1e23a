/* util: allocation that aborts on failure, time helpers, integers in decimal. */
#ifndef SURGE_UTIL_H
#define SURGE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation of our own structures: failure aborts with a message. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Raises the soft limit of open descriptors towards want (never above the
 * hard limit, never lowers it); returns the soft limit now in force. */
size_t util_raise_fd_limit(size_t want);

/* Most digits of a uint64_t in decimal. */
#define UTIL_UINT_DIGITS 20
/* Writes v in decimal into out (at least UTIL_UINT_DIGITS bytes), without a
 * terminating NUL; returns the number of digits written (1 for 0). For
 * strings built on the request path, where printf costs too much. */
size_t util_format_uint(char *out, uint64_t v);

/* Wall clock in milliseconds since the Unix epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in seconds, for durations. */
double util_mono_seconds(void);
/* Formats ms since the epoch as "2026-11-25T19:42:03.123Z" into out (>= 25
 * bytes; a smaller outlen truncates, NUL-terminated). Each thread keeps the
 * last second it formatted, so most calls write only the milliseconds. */
void util_format_iso8601(int64_t ms, char *out, size_t outlen);
/* Parses that same format back; returns 0 and sets *ms, or -1. */
int util_parse_iso8601(const char *s, int64_t *ms);

#endif
