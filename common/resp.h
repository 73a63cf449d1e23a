/* resp: writes Redis commands in RESP (the protocol's multi-bulk form,
 * "*N\r\n$len\r\narg\r\n..."), without printf. */
#ifndef SURGE_RESP_H
#define SURGE_RESP_H

#include <stddef.h>
#include <stdint.h>

/* Decimal digits of v (1 for 0): what util_format_uint writes. */
size_t resp_digits(uint64_t v);
/* Bytes taken by the header "*argc\r\n". */
size_t resp_header_len(size_t argc);
/* Bytes taken by one argument of len bytes: "$len\r\n" arg "\r\n". */
size_t resp_arg_len(size_t len);
/* Writes "*argc\r\n" at out; returns the bytes written. */
size_t resp_write_header(char *out, size_t argc);
/* Writes one argument at out; returns the bytes written (resp_arg_len(len)). */
size_t resp_write_arg(char *out, const char *arg, size_t len);
/* Bytes taken by n arguments (lens NULL: each argv[i] is a C string). */
size_t resp_args_len(size_t n, const char *const *argv, const size_t *lens);
/* Writes n arguments at out; returns the bytes written (resp_args_len). */
size_t resp_write_args(char *out, size_t n, const char *const *argv, const size_t *lens);

#endif
