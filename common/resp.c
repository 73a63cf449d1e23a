/* resp: the RESP command writer. Lengths are computed first so that a
 * command is written once into memory of the right size. */
#include "resp.h"
#include "util.h"

#include <string.h>

size_t resp_digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

size_t resp_header_len(size_t argc)
{
    return 1 + resp_digits(argc) + 2;
}

size_t resp_arg_len(size_t len)
{
    return 1 + resp_digits(len) + 2 + len + 2;
}

size_t resp_write_header(char *out, size_t argc)
{
    size_t n = 0;
    out[n++] = '*';
    n += util_format_uint(out + n, argc);
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

size_t resp_write_arg(char *out, const char *arg, size_t len)
{
    size_t n = 0;
    out[n++] = '$';
    n += util_format_uint(out + n, len);
    out[n++] = '\r';
    out[n++] = '\n';
    if (len)
        memcpy(out + n, arg, len);
    n += len;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}

static size_t arg_len(const char *const *argv, const size_t *lens, size_t i)
{
    return lens ? lens[i] : strlen(argv[i]);
}

size_t resp_args_len(size_t n, const char *const *argv, const size_t *lens)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += resp_arg_len(arg_len(argv, lens, i));
    return total;
}

size_t resp_write_args(char *out, size_t n, const char *const *argv, const size_t *lens)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += resp_write_arg(out + w, argv[i], arg_len(argv, lens, i));
    return w;
}
