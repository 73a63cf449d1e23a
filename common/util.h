/* util: allocation that aborts on failure, time helpers. */
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

/* Wall clock in milliseconds since the Unix epoch. */
int64_t util_now_ms(void);
/* Monotonic clock in seconds, for durations. */
double util_mono_seconds(void);
/* Formats ms since the epoch as "2026-11-25T19:42:03.123Z" into out (>= 25 bytes). */
void util_format_iso8601(int64_t ms, char *out, size_t outlen);
/* Parses that same format back; returns 0 and sets *ms, or -1. */
int util_parse_iso8601(const char *s, int64_t *ms);

#endif
