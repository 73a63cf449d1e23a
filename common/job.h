/* job: the job model shared by api and worker — types, statuses, ids,
 * request validation, and the Redis key names (DESIGN.md "Redis keys"). */
#ifndef SURGE_JOB_H
#define SURGE_JOB_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

/* Every job type: its enum name and its name in the API, the job hash and
 * the name of its queue. X(enum, "name") once per type; the first is also the
 * queue of an id whose job has no type a binary knows (worker/scripts.c). */
#define JOB_TYPES(X) X(JOB_READ, "read") X(JOB_BURN, "burn")

#define JOB_TYPE_ENUM(e, name) e,
enum job_type { JOB_TYPES(JOB_TYPE_ENUM) JOB_TYPE_COUNT, JOB_TYPE_UNKNOWN = -1 };
#undef JOB_TYPE_ENUM

enum job_status {
    JOB_QUEUED,
    JOB_RUNNING,
    JOB_SUCCEEDED,
    JOB_FAILED,
    JOB_DEAD,
    JOB_STATUS_COUNT
};

#define JOB_ID_LEN 26 /* Crockford base32 of 128 bits, ULID layout */

/* A validated job request; params_json is canonical JSON we wrote. */
struct job_request {
    enum job_type type;
    int64_t item_id; /* read */
    int seconds;     /* burn */
    char params_json[64];
};

/* What went wrong with a request: an HTTP status, a code and a message. */
struct job_error {
    int status;
    const char *code;
    char message[160];
};

const char *job_type_name(enum job_type t);
enum job_type job_type_parse(const char *s, size_t n);
const char *job_status_name(enum job_status s);

/* Makes a new id: 48 bits of milliseconds then 80 random bits, so ids sort by
 * creation time; increasing within the same millisecond. out gets 27 bytes. */
void job_new_id(char out[JOB_ID_LEN + 1]);
/* True if s is a well-formed id (26 Crockford base32 characters). */
int job_id_valid(const char *s, size_t n);

/* Validates a POST body. forced_type is JOB_TYPE_UNKNOWN for POST /jobs
 * (body {"type":..., "params":{...}}), or the type of POST /jobs/{type}
 * (body = params). Returns 0, or -1 with *err filled in. */
int job_parse_request(const char *body, size_t len, enum job_type forced_type,
                      int burn_default_seconds, int burn_max_seconds, struct job_request *out,
                      struct job_error *err);

/* Parses stored params (worker side) for the given type; same rules. */
int job_parse_params(enum job_type type, const char *json, size_t len, int burn_default_seconds,
                     int burn_max_seconds, struct job_request *out, struct job_error *err);

/* Redis key names; set the prefix once at start. */
void keys_set_prefix(const char *prefix);
const char *keys_prefix(void);
/* "surge:queue:{type}": the ids of one type waiting to run (static storage;
 * t must be a type, not JOB_TYPE_UNKNOWN). */
const char *key_queue(enum job_type t);
/* "surge:queue:", the start of every queue's name, for the scripts that put
 * an id back on the queue of its job's type themselves. */
const char *key_queue_prefix(void);
/* "surge:queue": the one queue of both types before each type had its own.
 * The workers move what an older api or worker still puts there to the
 * queue of each id's type (worker/upkeep.c). */
const char *key_shared_queue(void);
/* "surge:retry", "surge:dead", "surge:workers" (the registry of live workers)
 * and "surge:job:", the start of every job hash's name, for the scripts that
 * name jobs themselves (static storage). */
const char *key_retry(void);
const char *key_dead(void);
const char *key_workers(void);
const char *key_job_prefix(void);
/* Writes "surge:job:{id}", "surge:processing:{worker}", "surge:worker:{worker}" into out. */
void key_job(struct buf *out, const char *id);
void key_processing(struct buf *out, const char *worker);
void key_heartbeat(struct buf *out, const char *worker);

#endif
