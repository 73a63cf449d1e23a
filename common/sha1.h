/* sha1: SHA-1 (FIPS 180-4) of a byte string, for the names Redis gives Lua
 * scripts (EVALSHA). Not for anything that needs a secure hash. */
#ifndef SURGE_SHA1_H
#define SURGE_SHA1_H

#include <stddef.h>

/* Writes the SHA-1 of data[0..len) as 40 lower-case hex digits and a NUL. */
void sha1_hex(const void *data, size_t len, char out[41]);

#endif
