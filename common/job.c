/* job: types, statuses, ids, request validation and key names. */
#include "job.h"
#include "json_reader.h"
#include "util.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#define JOB_TYPE_NAME(e, name) [e] = name,
static const char *const type_names[JOB_TYPE_COUNT] = {JOB_TYPES(JOB_TYPE_NAME)};
#undef JOB_TYPE_NAME
static const char *const status_names[JOB_STATUS_COUNT] = {"queued", "running", "succeeded",
                                                          "failed", "dead"};

const char *job_type_name(enum job_type t)
{
    return t >= 0 && t < JOB_TYPE_COUNT ? type_names[t] : "unknown";
}

enum job_type job_type_parse(const char *s, size_t n)
{
    for (int i = 0; i < JOB_TYPE_COUNT; i++)
        if (strlen(type_names[i]) == n && !memcmp(s, type_names[i], n))
            return (enum job_type)i;
    return JOB_TYPE_UNKNOWN;
}

const char *job_status_name(enum job_status s)
{
    return s >= 0 && s < JOB_STATUS_COUNT ? status_names[s] : "unknown";
}

/* ---- ids ---- */

static const char crockford[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t last_ms = -1;
static uint8_t last_random[10];

void job_new_id(char out[JOB_ID_LEN + 1])
{
    uint8_t bytes[16];
    int64_t ms = util_now_ms();
    pthread_mutex_lock(&id_lock);
    if (ms <= last_ms) {
        /* Same (or earlier: clock step) millisecond: keep order by adding one. */
        ms = last_ms;
        for (int i = 9; i >= 0 && ++last_random[i] == 0; i--)
            ;
    } else {
        if (getrandom(last_random, sizeof last_random, 0) != (ssize_t)sizeof last_random) {
            /* getrandom on Linux does not fail for 10 bytes once booted;
             * fall back to the clock rather than abort. */
            for (size_t i = 0; i < sizeof last_random; i++)
                last_random[i] = (uint8_t)(ms >> (i % 6 * 8)) ^ (uint8_t)(i * 37);
        }
        last_ms = ms;
    }
    for (int i = 0; i < 6; i++)
        bytes[i] = (uint8_t)(ms >> (40 - 8 * i));
    memcpy(bytes + 6, last_random, 10);
    pthread_mutex_unlock(&id_lock);

    /* 128 bits -> 26 base32 digits, most significant first (2 padding bits). */
    unsigned acc = 0;
    int bits = 2; /* pretend two leading zero bits so 130 = 26 * 5 */
    int o = 0;
    for (int i = 0; i < 16; i++) {
        acc = (acc << 8) | bytes[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = crockford[(acc >> bits) & 31];
        }
    }
    out[o] = '\0';
}

int job_id_valid(const char *s, size_t n)
{
    if (n != JOB_ID_LEN || s[0] > '7')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(crockford, s[i]) || s[i] == '\0')
            return 0;
    return 1;
}

/* ---- request validation ---- */

static int fail(struct job_error *err, const char *code, const char *msg)
{
    err->status = 400;
    err->code = code;
    snprintf(err->message, sizeof err->message, "%s", msg);
    return -1;
}

/* Only the keys named may appear in the params object. */
static int only_keys(const struct json_doc *doc, int obj, const char *allowed, struct job_error *err)
{
    int i = obj + 1;
    for (int k = 0; k < doc->tok[obj].size; k++) {
        if (!json_string_equals(doc, i, allowed)) {
            err->status = 400;
            err->code = "bad_params";
            snprintf(err->message, sizeof err->message, "unknown parameter \"%.*s\"; allowed: %s",
                     (int)(doc->tok[i].end - doc->tok[i].start) > 40
                         ? 40
                         : doc->tok[i].end - doc->tok[i].start,
                     doc->text + doc->tok[i].start, allowed);
            return -1;
        }
        i = json_skip(doc, i + 1);
    }
    return 0;
}

static int params_from_doc(const struct json_doc *doc, int obj, enum job_type type,
                           int burn_default, int burn_max, struct job_request *out,
                           struct job_error *err)
{
    if (obj < 0 || doc->tok[obj].type != JSMN_OBJECT)
        return fail(err, "bad_params", "params must be a JSON object");
    out->type = type;
    if (type == JOB_READ) {
        if (only_keys(doc, obj, "item_id", err))
            return -1;
        int v = json_object_get(doc, obj, "item_id");
        if (v < 0)
            return fail(err, "bad_params", "read needs \"item_id\", a positive whole number");
        if (json_get_int64(doc, v, &out->item_id) || out->item_id < 1)
            return fail(err, "bad_params", "\"item_id\" must be a positive whole number");
        snprintf(out->params_json, sizeof out->params_json, "{\"item_id\":%lld}",
                 (long long)out->item_id);
        return 0;
    }
    if (only_keys(doc, obj, "seconds", err))
        return -1;
    int v = json_object_get(doc, obj, "seconds");
    int64_t secs = burn_default;
    if (v >= 0 && (json_get_int64(doc, v, &secs) || secs < 1 || secs > burn_max)) {
        err->status = 400;
        err->code = "bad_params";
        snprintf(err->message, sizeof err->message,
                 "\"seconds\" must be a whole number from 1 to %d", burn_max);
        return -1;
    }
    out->seconds = (int)secs;
    snprintf(out->params_json, sizeof out->params_json, "{\"seconds\":%d}", out->seconds);
    return 0;
}

static int parse_doc(struct json_doc *doc, const char *body, size_t len, struct job_error *err)
{
    const char *why;
    if (json_parse(doc, body, len, &why)) {
        fail(err, "bad_json", "the body is not valid JSON: ");
        strncat(err->message, why, sizeof err->message - strlen(err->message) - 1);
        return -1;
    }
    return 0;
}

int job_parse_request(const char *body, size_t len, enum job_type forced_type,
                      int burn_default_seconds, int burn_max_seconds, struct job_request *out,
                      struct job_error *err)
{
    struct json_doc doc;
    memset(out, 0, sizeof *out);
    if (parse_doc(&doc, body, len, err))
        return -1;
    if (forced_type != JOB_TYPE_UNKNOWN)
        return params_from_doc(&doc, 0, forced_type, burn_default_seconds, burn_max_seconds, out,
                               err);
    if (doc.tok[0].type != JSMN_OBJECT)
        return fail(err, "bad_json", "the body must be an object {\"type\":...,\"params\":{...}}");
    int i = 1;
    for (int k = 0; k < doc.tok[0].size; k++) {
        if (!json_string_equals(&doc, i, "type") && !json_string_equals(&doc, i, "params"))
            return fail(err, "bad_json", "the body may hold only \"type\" and \"params\"");
        i = json_skip(&doc, i + 1);
    }
    int t = json_object_get(&doc, 0, "type");
    if (t < 0 || doc.tok[t].type != JSMN_STRING)
        return fail(err, "unknown_type", "\"type\" must be \"read\" or \"burn\"");
    enum job_type type =
        job_type_parse(doc.text + doc.tok[t].start, (size_t)(doc.tok[t].end - doc.tok[t].start));
    if (type == JOB_TYPE_UNKNOWN)
        return fail(err, "unknown_type", "\"type\" must be \"read\" or \"burn\"");
    int p = json_object_get(&doc, 0, "params");
    if (p < 0) {
        /* A burn needs no params; a read fails with the usual message. */
        static const char empty[] = "{}";
        struct json_doc none;
        const char *why;
        json_parse(&none, empty, 2, &why);
        return params_from_doc(&none, 0, type, burn_default_seconds, burn_max_seconds, out, err);
    }
    return params_from_doc(&doc, p, type, burn_default_seconds, burn_max_seconds, out, err);
}

int job_parse_params(enum job_type type, const char *json, size_t len, int burn_default_seconds,
                     int burn_max_seconds, struct job_request *out, struct job_error *err)
{
    struct json_doc doc;
    memset(out, 0, sizeof *out);
    if (parse_doc(&doc, json, len, err))
        return -1;
    return params_from_doc(&doc, 0, type, burn_default_seconds, burn_max_seconds, out, err);
}

/* ---- key names ---- */

static char prefix[72] = "surge:";
static char queue_prefix[96] = "surge:queue:", shared_queue_key[96] = "surge:queue";
static char retry_key[96] = "surge:retry", dead_key[96] = "surge:dead";
static char workers_key[96] = "surge:workers", job_prefix[96] = "surge:job:";
#define DEFAULT_QUEUE_KEY(e, name) [e] = "surge:queue:" name,
static char queue_keys[JOB_TYPE_COUNT][128] = {JOB_TYPES(DEFAULT_QUEUE_KEY)};
#undef DEFAULT_QUEUE_KEY
static size_t job_prefix_len = sizeof "surge:job:" - 1;

void keys_set_prefix(const char *p)
{
    char copy[sizeof prefix];
    snprintf(copy, sizeof copy, "%s", p); /* p may be our own buffer */
    memcpy(prefix, copy, sizeof prefix);
    snprintf(queue_prefix, sizeof queue_prefix, "%squeue:", prefix);
    snprintf(shared_queue_key, sizeof shared_queue_key, "%squeue", prefix);
    snprintf(retry_key, sizeof retry_key, "%sretry", prefix);
    snprintf(dead_key, sizeof dead_key, "%sdead", prefix);
    snprintf(workers_key, sizeof workers_key, "%sworkers", prefix);
    snprintf(job_prefix, sizeof job_prefix, "%sjob:", prefix);
    job_prefix_len = strlen(job_prefix);
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        snprintf(queue_keys[t], sizeof queue_keys[t], "%s%s", queue_prefix, type_names[t]);
}

const char *keys_prefix(void)
{
    return prefix;
}

const char *key_queue(enum job_type t)
{
    assert(t >= 0 && t < JOB_TYPE_COUNT);
    return queue_keys[t];
}

const char *key_queue_prefix(void)
{
    return queue_prefix;
}

const char *key_shared_queue(void)
{
    return shared_queue_key;
}

const char *key_retry(void)
{
    return retry_key;
}

const char *key_dead(void)
{
    return dead_key;
}

const char *key_workers(void)
{
    return workers_key;
}

const char *key_job_prefix(void)
{
    return job_prefix;
}

void key_job(struct buf *out, const char *id)
{
    /* On the request path: no printf. */
    buf_append(out, job_prefix, job_prefix_len);
    buf_puts(out, id);
}

void key_processing(struct buf *out, const char *worker)
{
    buf_printf(out, "%sprocessing:%s", prefix, worker);
}

void key_heartbeat(struct buf *out, const char *worker)
{
    buf_printf(out, "%sworker:%s", prefix, worker);
}
