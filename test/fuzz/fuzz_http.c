/* libFuzzer harness for the HTTP request path: arbitrary bytes go through
 * http_parse (limits included) in chunks, pipelined requests included, and
 * each complete request goes through the router, the Idempotency-Key check
 * and the job validation, as surge-api does. Nothing may crash, leak or read out of bounds. */
#include "../../api/idempotency.h"
#include "../../api/routes.h"
#include "http_parse.h"
#include "job.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct http_parse p;
    http_parse_init(&p, 8192, 16384);
    /* The first byte chooses the chunk size, so requests split anywhere. */
    size_t chunk = size ? (size_t)data[0] % 64 + 1 : 1;
    const char *in = (const char *)data + (size ? 1 : 0);
    size_t left = size ? size - 1 : 0;
    size_t pending = 0; /* bytes given but not taken yet */
    while (left > 0 || pending > 0) {
        size_t n = pending + (left < chunk ? left : chunk);
        left -= n - pending;
        size_t used;
        enum http_parse_result r = http_parse_feed(&p, in, n, &used);
        in += used;
        pending = n - used;
        if (r == HTTP_PARSE_ERROR)
            break;
        if (r == HTTP_PARSE_INCOMPLETE) {
            if (left == 0)
                break;
            continue;
        }
        struct http_parsed req;
        if (http_parse_take(&p, &req) < 0)
            break;
        struct route_match m;
        routes_match(req.method, req.path, req.path_len, &m);
        if (m.method_ok && m.route != ROUTE_NONE && m.route != ROUTE_JOB) {
            struct job_request jr;
            struct job_error err;
            char key[IDEM_KEY_MAX + 1];
            if (req.idempotency_key)
                idem_parse_header(req.idempotency_key, req.idempotency_key_len,
                                  req.idempotency_keys, key, &err);
            enum job_type forced = m.route == ROUTE_JOBS_READ   ? JOB_READ
                                   : m.route == ROUTE_JOBS_BURN ? JOB_BURN
                                                                : JOB_TYPE_UNKNOWN;
            job_parse_request(req.body, req.body_len, forced, 180, 600, &jr, &err);
        } else if (m.route == ROUTE_JOB) {
            job_id_valid(m.id, m.id_len);
        }
        http_parse_next(&p);
    }
    http_parse_free(&p);
    return 0;
}
