/* job_view: renders a job hash (HGETALL reply) as the JSON of GET /jobs/{id}. */
#ifndef SURGE_API_JOB_VIEW_H
#define SURGE_API_JOB_VIEW_H

#include "buf.h"

#include <hiredis/hiredis.h>

/* reply is the array of field, value, field, value... Stored JSON (params,
 * result, error) is inserted as JSON when valid, else as a string. */
void job_view_render(const char *id, const redisReply *hash, struct buf *out);

#endif
