/* idempotency: the Idempotency-Key request header of POSTs (IETF httpapi
 * draft "The Idempotency-Key HTTP Header Field"). A client that sends the
 * same key with the same job again, within SURGE_RESULT_TTL_SECONDS, gets the
 * job the first request created (202 again); the same key with another job
 * is 422. The check and the job's creation are one Redis script
 * (routes.c), so a retry after a 503 whose job Redis did queue finds it. */
#ifndef SURGE_API_IDEMPOTENCY_H
#define SURGE_API_IDEMPOTENCY_H

#include "buf.h"
#include "job.h"

#include <stddef.h>

/* Longest key accepted, in characters (quotes not counted). */
#define IDEM_KEY_MAX 255

/* Reads the header. value/len: its value as received (http_parse keeps the
 * first HTTP_PARSE_IDEM_BYTES, which is enough to tell a key too long);
 * count: how many such headers came.
 * Accepts 1 to IDEM_KEY_MAX characters from A-Z a-z 0-9 - _ . : ~ + / =,
 * bare or as a structured-field string in double quotes (the draft's form;
 * "abc" and abc are the same key). Writes the key, NUL-terminated, to out.
 * Returns 0, or -1 with *err filled in (400 bad_idempotency_key). */
int idem_parse_header(const char *value, size_t len, int count, char out[IDEM_KEY_MAX + 1],
                      struct job_error *err);

/* Writes the Redis key "surge:idem:{key}" into out. */
void idem_redis_key(struct buf *out, const char *key);

#endif
