/* utf8: validation of UTF-8 text (RFC 3629: no overlong forms, no
 * surrogates, nothing past U+10FFFF). JSON in and out must be UTF-8. */
#ifndef SURGE_UTF8_H
#define SURGE_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0. */
size_t utf8_sequence_length(const unsigned char *s, size_t n);
/* True if s[0..n) is valid UTF-8. */
bool utf8_valid(const char *s, size_t n);

#endif
