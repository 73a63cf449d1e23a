/* job_view: job hash -> JSON. */
#include "job_view.h"
#include "json_reader.h"
#include "json_writer.h"
#include "utf8.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const redisReply *field(const redisReply *hash, const char *name)
{
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const redisReply *k = hash->element[i];
        if (k->type == REDIS_REPLY_STRING && strlen(name) == (size_t)k->len &&
            !memcmp(k->str, name, (size_t)k->len))
            return hash->element[i + 1];
    }
    return NULL;
}

static void put_string(struct json_writer *w, const char *key, const redisReply *v)
{
    jw_key(w, key);
    if (v && v->type == REDIS_REPLY_STRING && v->len > 0)
        jw_string_n(w, v->str, (size_t)v->len);
    else
        jw_null(w);
}

static void put_json(struct json_writer *w, const char *key, const redisReply *v)
{
    jw_key(w, key);
    if (!v || v->type != REDIS_REPLY_STRING || v->len == 0) {
        jw_null(w);
        return;
    }
    struct json_doc doc;
    const char *why;
    if (utf8_valid(v->str, (size_t)v->len) && json_parse(&doc, v->str, (size_t)v->len, &why) == 0)
        jw_raw(w, v->str, (size_t)v->len);
    else
        jw_string_n(w, v->str, (size_t)v->len); /* never emit invalid JSON */
}

void job_view_render(const char *id, const redisReply *hash, struct buf *out)
{
    struct json_writer w;
    jw_init(&w, out);
    jw_object_begin(&w);
    jw_key_string(&w, "id", id);
    put_string(&w, "type", field(hash, "type"));
    put_string(&w, "status", field(hash, "status"));
    const redisReply *attempts = field(hash, "attempts");
    jw_key_int(&w, "attempts", attempts && attempts->str ? strtol(attempts->str, NULL, 10) : 0);
    put_json(&w, "params", field(hash, "params"));
    put_json(&w, "result", field(hash, "result"));
    put_json(&w, "error", field(hash, "error"));
    put_string(&w, "created_at", field(hash, "created_at"));
    put_string(&w, "started_at", field(hash, "started_at"));
    put_string(&w, "finished_at", field(hash, "finished_at"));
    put_string(&w, "worker", field(hash, "worker"));
    /* Stored in ms since the epoch (the retry set's score); shown like the
     * other times, so that a failed job waiting for a retry is told apart
     * from one that failed for good. */
    const redisReply *retry = field(hash, "retry_at");
    jw_key(&w, "retry_at");
    if (retry && retry->type == REDIS_REPLY_STRING && retry->len > 0) {
        char when[32];
        util_format_iso8601(strtoll(retry->str, NULL, 10), when, sizeof when);
        jw_string(&w, when);
    } else {
        jw_null(&w);
    }
    jw_object_end(&w);
}
