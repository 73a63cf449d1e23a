/* fetcher: reliable fetch, one queue per job type. A take moves ids from
 * the queue of a type into this worker's processing list inside Redis, so an
 * id is always in one of the two lists, never only in our memory.
 * The take is one script (scripts.h, script_take) on the main connection:
 * up to the type's free slots' worth of ids, each moved by LMOVE and started
 * in the same step (running, attempt counted, lease given). On the main
 * connection because it writes job state, as the outcomes do: no take while
 * that connection is down, and its answer comes before that of any orphan
 * check sent after it (same connection, in order), so the check never takes
 * an id of a take in flight for an orphan. An answer lost (connection
 * dropped, deadline) leaves the ids in our list, running under our name: the
 * orphan check puts them back, revoking the takes.
 * Only when a take finds the queue empty does the fetcher wait on a BLMOVE,
 * on a connection of its own per type (BLMOVE blocks its connection while it
 * waits), so that an idle worker wakes at once on a new job; the id it brings
 * is started by the next take, together with what else has come meanwhile.
 * Each type has its own limit of jobs in hand
 * (SURGE_WORKER_BURN_CONCURRENCY, SURGE_WORKER_READ_CONCURRENCY), never
 * exceeded: a take asks for at most limit - running ids, and one take or
 * BLMOVE per type is in flight at a time. A job's slot is free once the job
 * has ended, while its outcome is written; at most limit outcomes per type
 * are written beside the jobs running (fetcher_room). A worker whose burn slots are full
 * still takes reads, and no read ever waits behind a burn.
 * No id is taken while its job could not run or its outcome could not be
 * written: without the main Redis connection (job state, heartbeats) no
 * queue is read; without any PostgreSQL connection the read queue is not,
 * and burns, which need no database, go on. */
#include "log.h"
#include "scripts.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <string.h>

/* How long one BLMOVE waits for work; short, so a shutdown is noticed soon. */
#define BLOCK_SECONDS 1
#define RETRY_MS 500

static void kick(struct fetcher *f);

static void on_backoff_over(uv_timer_t *t)
{
    kick(t->data);
}

/* How many ids a take may ask for: the free slots, as long as the outcomes
 * being written stay within one more limit's worth. */
static int fetcher_room(const struct fetcher *f)
{
    int slots = f->limit - f->running, writes = 2 * f->limit - f->running - f->writing;
    return slots < writes ? slots : writes;
}

static void take(struct fetcher *f, const char *id, size_t len);

static void retry_later(struct fetcher *f)
{
    if (!f->w->stopping)
        uv_timer_start(&f->backoff, on_backoff_over, RETRY_MS, 0);
}

/* The take's answer: {empty, {{id, answer}...}} (scripts.h). */
static bool take_reply(const redisReply *r)
{
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_ARRAY)
        return false;
    for (size_t i = 0; i < r->element[1]->elements; i++) {
        const redisReply *e = r->element[1]->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            return false;
    }
    return true;
}

static void on_taken(redisReply *reply, const char *err, void *arg)
{
    struct fetcher *f = arg;
    struct worker *w = f->w;
    if (!take_reply(reply)) {
        f->outstanding = false;
        /* Whatever it moved stays in our list; the orphan check puts it back. */
        log_warn("fetch_failed", "%s queue: take: %s", job_type_name(f->type),
                 !reply                            ? err
                 : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                    : "unexpected answer");
        retry_later(f);
        worker_maybe_exit(w);
        return;
    }
    f->queue_empty = reply->element[0]->integer == 1;
    const redisReply *ids = reply->element[1];
    if (ids->elements > 0)
        log_debug("jobs_taken", "%zu %s job(s) in one take", ids->elements,
                  job_type_name(f->type));
    /* Still outstanding meanwhile: a job let go at once (stale, unreadable)
     * must not send the next take before every id of this one holds a slot. */
    for (size_t i = 0; i < ids->elements; i++) {
        const redisReply *id = ids->element[i]->element[0];
        runner_begin(w, f->type, id->str, (size_t)id->len, ids->element[i]->element[1]);
    }
    f->outstanding = false;
    kick(f);
    worker_maybe_exit(w);
}

static void on_blmoved(redisReply *reply, const char *err, void *arg)
{
    struct fetcher *f = arg;
    struct worker *w = f->w;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        f->outstanding = false;
        if (!w->stopping)
            log_debug("fetch_failed", "%s queue: BLMOVE: %s", job_type_name(f->type),
                      reply ? reply->str : err);
        retry_later(f);
        worker_maybe_exit(w);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && !w->stopping && !fetcher_paused_why(w, f->type)) {
        /* Started by a take, with what else may have come meanwhile. */
        take(f, reply->str, (size_t)reply->len);
        return;
    }
    f->outstanding = false;
    if (reply->type == REDIS_REPLY_STRING) {
        /* A BLMOVE that was already waiting when a dependency went away or
         * a shutdown began. */
        const char *why = w->stopping ? "this worker is stopping" : fetcher_paused_why(w, f->type);
        log_info("job_put_back", "job %.*s came in as this worker stopped taking %s jobs (%s)",
                 reply->len > 64 ? 64 : (int)reply->len, reply->str, job_type_name(f->type), why);
        upkeep_put_back(w, reply->str, (size_t)reply->len);
    }
    /* NIL: nothing arrived within the block time; ask again. */
    kick(f);
    worker_maybe_exit(w);
}

/* Sends the take for the fetcher's free slots; id (len bytes), when not
 * NULL, came in by BLMOVE, is in our list already and takes one of them. */
static void take(struct fetcher *f, const char *id, size_t len)
{
    struct worker *w = f->w;
    struct buf err = {0};
    char now[32], ttl[16], dead_max[16], n[16];
    util_format_iso8601(util_now_ms(), now, sizeof now);
    snprintf(ttl, sizeof ttl, "%d", w->cfg->result_ttl_seconds);
    snprintf(dead_max, sizeof dead_max, "%d", w->cfg->dead_list_max);
    snprintf(n, sizeof n, "%d", fetcher_room(f) - (id ? 1 : 0));
    runner_error_json(&err, "unreadable_job",
                      "the job's hash was missing or incomplete when a worker took it");
    /* An id is passed as received: one that is not ours to parse still
     * reaches the dead list under its own name. */
    const char *argv[] = {"EVAL", script_take, "3", key_queue(f->type), w->processing.data,
                          key_dead(), w->name, now, ttl, err.data, dead_max, key_job_prefix(),
                          n, id};
    size_t lens[ARRAY_LEN(argv)];
    int argc = id ? (int)ARRAY_LEN(argv) : (int)ARRAY_LEN(argv) - 1;
    for (int i = 0; i < argc; i++)
        lens[i] = i == argc - 1 && id ? len : strlen(argv[i]);
    f->outstanding = true;
    rc_command_argv(w->redis, on_taken, f, argc, argv, lens);
    buf_free(&err);
}

const char *fetcher_paused_why(const struct worker *w, enum job_type type)
{
    if (!rc_is_up(w->redis))
        return "the main Redis connection is down";
    if (handler_needs_postgres(type) && pg_pool_ready(w->pg) == 0)
        return "no PostgreSQL connection is open";
    return NULL;
}

/* Logs when taking jobs of a type stops for a missing dependency, and when
 * it resumes. */
static bool may_fetch(struct fetcher *f)
{
    const char *why = fetcher_paused_why(f->w, f->type);
    const char *type = job_type_name(f->type);
    if (why && !f->paused)
        log_warn("fetch_paused", "%s: taking no %s job; they wait in %s", why, type,
                 key_queue(f->type));
    else if (!why && f->paused)
        log_info("fetch_resumed", "taking %s jobs again", type);
    f->paused = why != NULL;
    return why == NULL;
}

static void kick(struct fetcher *f)
{
    struct worker *w = f->w;
    if (w->stopping || !w->own_list_recovered || f->outstanding || fetcher_room(f) <= 0 ||
        uv_is_active((uv_handle_t *)&f->backoff) || !may_fetch(f))
        return;
    if (!f->queue_empty) {
        take(f, NULL, 0);
        return;
    }
    f->outstanding = true;
    rc_command_deadline(f->conn, BLOCK_SECONDS * 1000 + w->cfg->redis_timeout_ms, on_blmoved, f,
                        "BLMOVE %s %s RIGHT LEFT %d", key_queue(f->type), w->processing.data,
                        BLOCK_SECONDS);
}

void fetcher_kick(struct worker *w)
{
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        kick(&w->fetchers[t]);
}

static void on_kick_soon(uv_check_t *c)
{
    uv_check_stop(c);
    fetcher_kick(c->data);
}

void fetcher_kick_soon(struct worker *w)
{
    if (!uv_is_closing((uv_handle_t *)&w->kick_soon))
        uv_check_start(&w->kick_soon, on_kick_soon);
}

bool fetcher_outstanding(const struct worker *w)
{
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        if (w->fetchers[t].outstanding)
            return true;
    return false;
}

void fetcher_init(struct worker *w, struct app *app)
{
    uv_check_init(w->loop, &w->kick_soon);
    w->kick_soon.data = w;
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        struct fetcher *f = &w->fetchers[t];
        f->w = w;
        f->type = (enum job_type)t;
        f->limit = t == JOB_BURN ? w->cfg->burn_concurrency : w->cfg->read_concurrency;
        char name[32]; /* in logs: "redis-fetch-read" */
        snprintf(name, sizeof name, "redis-fetch-%s", job_type_name(f->type));
        struct rc_opts o = app_redis_opts(app, name, NULL, NULL);
        f->conn = rc_create(w->loop, &o);
        uv_timer_init(w->loop, &f->backoff);
        f->backoff.data = f;
    }
}

void fetcher_stop(struct worker *w)
{
    uv_check_stop(&w->kick_soon);
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        uv_timer_stop(&w->fetchers[t].backoff);
}

void fetcher_close(struct worker *w)
{
    uv_close((uv_handle_t *)&w->kick_soon, NULL);
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        uv_close((uv_handle_t *)&w->fetchers[t].backoff, NULL);
        rc_close(w->fetchers[t].conn, NULL, NULL);
    }
}
