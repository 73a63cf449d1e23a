/* idempotency: reading the Idempotency-Key header. See idempotency.h. */
#include "idempotency.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static bool key_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("-_.:~+/=", c) != NULL);
}

static int bad(struct job_error *err, const char *message)
{
    err->status = 400;
    err->code = "bad_idempotency_key";
    snprintf(err->message, sizeof err->message, "%s", message);
    return -1;
}

int idem_parse_header(const char *value, size_t len, int count, char out[IDEM_KEY_MAX + 1],
                      struct job_error *err)
{
    static const char rule[] = "Idempotency-Key must be 1 to 255 characters from A-Z a-z 0-9 "
                               "- _ . : ~ + / =, bare or in double quotes";
    if (count > 1)
        return bad(err, "send one Idempotency-Key header, not several");
    /* Optional white space around the value is not part of it. */
    while (len > 0 && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len > 0 && (value[len - 1] == ' ' || value[len - 1] == '\t'))
        len--;
    if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
        value++;
        len -= 2;
    }
    if (len == 0 || len > IDEM_KEY_MAX)
        return bad(err, rule);
    for (size_t i = 0; i < len; i++)
        if (!key_char(value[i]))
            return bad(err, rule);
    memcpy(out, value, len);
    out[len] = '\0';
    return 0;
}

void idem_redis_key(struct buf *out, const char *key)
{
    buf_printf(out, "%sidem:%s", keys_prefix(), key);
}
