/* upkeep: what a worker does every second besides running jobs.
 *   - heartbeat: SET surge:worker:{name} with a TTL of SURGE_HEARTBEAT_SECONDS
 *     and the worker's score (now, ms) in the registry surge:workers, in one
 *     script; renewed from the event loop, never from a burning thread, so a
 *     busy worker never looks dead.
 *   - retries: moves ids whose backoff is over from surge:retry to the queue
 *     of their type.
 *   - the shared queue: ids an older api or worker put on surge:queue (one
 *     queue for both types, before each had its own) move to the queue of
 *     their type, so a rolling upgrade strands none.
 *   - recovery: reads the registry for workers whose last beat is older than
 *     the heartbeat TTL, and for each whose heartbeat key has indeed expired
 *     moves its ids back to the queue in one script (no id is lost between
 *     two commands; their takes are revoked). Never a SCAN of the keyspace.
 *     Not before our connection has been up for one TTL: after Redis was
 *     away longer than that (restarted, its heartbeats expired meanwhile),
 *     every live worker has beaten again by then, and only the dead ones
 *     are taken for dead.
 *   - orphans: an id in our own list that we do not hold (the answer to its
 *     take or BLMOVE was lost with a connection, or came past the deadline)
 *     is put back after being seen twice; a take of it is revoked.
 *   - the dead list: ids whose job hash has expired leave its old end, and it
 *     keeps at most SURGE_DEAD_LIST_MAX ids. */
#include "json_writer.h"
#include "log.h"
#include "scripts.h"
#include "surge_metrics.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TICK_MS 1000
#define RECOVERY_EVERY_TICKS 3
#define ORPHAN_EVERY_TICKS 5
#define PRUNE_EVERY_TICKS 10
/* Workers looked at per registry read; the next read sees the rest. */
#define RECOVERY_BATCH 50

static double started_at;

/* ---- heartbeat ---- */

static void on_beat(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    if (!reply || reply->type != REDIS_REPLY_INTEGER)
        return; /* the next tick tries again */
    if (reply->integer == 1 && w->own_list_recovered)
        log_warn("worker_taken_for_dead",
                 "this worker was not in the registry any more: it was taken for dead (no beat "
                 "for %d s), and jobs it held went back to the queue; their outcomes from here "
                 "change nothing",
                 w->cfg->heartbeat_seconds);
    if (!w->own_list_recovered) {
        /* The first fetch waits until Redis holds our heartbeat and our
         * registry entry, so no one ever sees us hold a job without them. */
        w->own_list_recovered = true;
        fetcher_kick(w);
    }
}

static void beat(struct worker *w)
{
    struct buf val = {0};
    struct json_writer jw;
    jw_init(&jw, &val);
    jw_object_begin(&jw);
    jw_key_int(&jw, "pid", (int64_t)getpid());
    /* Jobs running and the most this worker runs at once, by type. */
    jw_key(&jw, "in_flight");
    jw_object_begin(&jw);
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        jw_key_int(&jw, job_type_name((enum job_type)t), w->fetchers[t].running);
    jw_object_end(&jw);
    /* Jobs ended whose outcome is being written: their slots are free. */
    jw_key(&jw, "writing");
    jw_object_begin(&jw);
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        jw_key_int(&jw, job_type_name((enum job_type)t), w->fetchers[t].writing);
    jw_object_end(&jw);
    jw_key(&jw, "concurrency");
    jw_object_begin(&jw);
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        jw_key_int(&jw, job_type_name((enum job_type)t), w->fetchers[t].limit);
    jw_object_end(&jw);
    jw_key(&jw, "uptime_seconds");
    jw_double(&jw, util_mono_seconds() - started_at, 0);
    jw_object_end(&jw);
    char ttl[16], now[24];
    snprintf(ttl, sizeof ttl, "%d", w->cfg->heartbeat_seconds);
    snprintf(now, sizeof now, "%lld", (long long)util_now_ms());
    const char *argv[] = {"2", w->heartbeat.data, key_workers(), val.data, ttl, now, w->name};
    rc_eval(w->redis, on_beat, w, script_beat, (int)ARRAY_LEN(argv), argv, NULL);
    buf_free(&val);
}

/* ---- retries ---- */

static void on_promoted(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_info("retries_due", "%lld job(s) back on the queue after their backoff",
                 reply->integer);
}

static void promote(struct worker *w)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)util_now_ms());
    const char *argv[] = {"1", key_retry(), now, key_job_prefix(), key_queue_prefix()};
    rc_eval(w->redis, on_promoted, NULL, script_promote, (int)ARRAY_LEN(argv), argv, NULL);
}

/* ---- the shared queue of older versions ---- */

static void on_migrated(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_info("shared_queue_moved",
                 "%lld job(s) found on %s (put there by an older version) moved to the queue of "
                 "their type",
                 reply->integer, key_shared_queue());
}

static void migrate(struct worker *w)
{
    const char *argv[] = {"1", key_shared_queue(), key_job_prefix(), key_queue_prefix()};
    rc_eval(w->redis, on_migrated, NULL, script_migrate, (int)ARRAY_LEN(argv), argv, NULL);
}

/* ---- putting ids back: dead workers' lists, our own list, orphans ---- */

/* Counts and logs the stale entries a put-back dropped: {moved, {types}}. */
static long long count_put_back(const redisReply *reply, const char *whose)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_ARRAY)
        return -1;
    const redisReply *stale = reply->element[1];
    for (size_t i = 0; i < stale->elements; i++)
        surge_metrics_stale(stale->element[i]->type == REDIS_REPLY_STRING ? stale->element[i]->str
                                                                          : "",
                            "recover");
    if (stale->elements > 0)
        log_warn("stale_outcome",
                 "%zu id(s) in the list of worker %s belonged to no take of that worker (run "
                 "elsewhere, or ended): dropped",
                 stale->elements, whose);
    return reply->element[0]->integer;
}

struct recovery {
    struct worker *w;
    bool own;
    char worker[160];
};

static void on_recovered(redisReply *reply, const char *err, void *arg)
{
    struct recovery *r = arg;
    long long moved = count_put_back(reply, r->worker);
    if (r->own) {
        r->w->own_recovery_running = false;
        if (moved >= 0)
            beat(r->w); /* its answer lets the fetching start */
    }
    if (moved < 0)
        log_warn("recovery_failed", "worker %s: %s", r->worker,
                 reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                 : reply                                   ? "unexpected answer"
                                                           : err);
    else if (moved > 0 && !r->own)
        metrics_add(sm.jobs_recovered, NULL, (double)moved);
    if (moved > 0)
        log_warn("jobs_recovered",
                 "worker %s stopped beating; %lld job(s) it held are back on the queue",
                 r->worker, moved);
    free(r);
}

/* mode: "dead", "start" or "exit" (scripts.h, script_recover). */
static void recover(struct worker *w, const char *worker_name, const char *mode, rc_reply_fn cb,
                    void *arg)
{
    struct buf hb = {0}, proc = {0};
    key_heartbeat(&hb, worker_name);
    key_processing(&proc, worker_name);
    const char *argv[] = {"3",  hb.data,          proc.data,          key_workers(),
                          mode, key_job_prefix(), worker_name,        key_queue_prefix()};
    rc_eval(w->redis, cb, arg, script_recover, (int)ARRAY_LEN(argv), argv, NULL);
    buf_free(&hb);
    buf_free(&proc);
}

static void recover_logged(struct worker *w, const char *worker_name, bool own)
{
    struct recovery *r = xcalloc(1, sizeof *r);
    r->w = w;
    r->own = own;
    snprintf(r->worker, sizeof r->worker, "%s", worker_name);
    recover(w, worker_name, own ? "start" : "dead", on_recovered, r);
}

static void on_registry(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    w->recovery_running = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || w->stopping)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *name = reply->element[i];
        if (name->type == REDIS_REPLY_STRING && strcmp(name->str, w->name) != 0)
            recover_logged(w, name->str, false);
    }
}

/* Workers whose last beat is older than the heartbeat TTL; the script checks
 * the heartbeat key itself, so a clock that differs between machines can only
 * delay a recovery, never take a live worker's jobs. */
static void read_registry(struct worker *w)
{
    char cutoff[24];
    snprintf(cutoff, sizeof cutoff, "%lld",
             (long long)(util_now_ms() - (int64_t)w->cfg->heartbeat_seconds * 1000));
    w->recovery_running = true;
    rc_command(w->redis, on_registry, w, "ZRANGEBYSCORE %s -inf %s LIMIT 0 %d", key_workers(),
               cutoff, RECOVERY_BATCH);
}

void upkeep_goodbye(struct worker *w, rc_reply_fn done, void *arg)
{
    recover(w, w->name, "exit", done, arg);
}

/* ---- orphans in our own list ---- */

static bool held(struct worker *w, const char *id)
{
    for (struct job_run *r = w->runs; r; r = r->next)
        if (!strcmp(r->id, id))
            return true;
    return false;
}

static bool seen_before(struct worker *w, const char *id)
{
    for (int i = 0; i < w->n_orphans; i++)
        if (!strcmp(w->orphans[i], id))
            return true;
    return false;
}

static void on_orphan(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    count_put_back(reply, w->name);
}

void upkeep_put_back(struct worker *w, const char *id, size_t len)
{
    const char *argv[] = {"1", w->processing.data, id, key_job_prefix(), w->name,
                          key_queue_prefix()};
    size_t lens[ARRAY_LEN(argv)];
    for (size_t i = 0; i < ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[2] = len;
    /* Without Redis it stays in our list; the orphan check puts it back. */
    rc_eval(w->redis, on_orphan, w, script_orphan, (int)ARRAY_LEN(argv), argv, lens);
}

static void on_own_list(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    w->orphan_check_running = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return;
    char now_seen[16][JOB_ID_LEN + 1];
    int n = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const char *id = reply->element[i]->str;
        if (!id || held(w, id))
            continue;
        if (seen_before(w, id)) {
            log_warn("orphan_requeued", "job %s sat in our list without a runner", id);
            upkeep_put_back(w, id, strlen(id));
        } else if (n < 16) {
            snprintf(now_seen[n++], JOB_ID_LEN + 1, "%s", id);
        }
    }
    memcpy(w->orphans, now_seen, sizeof now_seen);
    w->n_orphans = n;
}

static void check_orphans(struct worker *w)
{
    if (w->orphan_check_running)
        return;
    w->orphan_check_running = true;
    rc_command(w->redis, on_own_list, w, "LRANGE %s 0 -1", w->processing.data);
}

/* ---- the dead list ---- */

static void on_pruned(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_info("dead_list_pruned", "%lld id(s) whose job has expired left the dead list",
                 reply->integer);
}

static void prune_dead(struct worker *w)
{
    char max[16];
    snprintf(max, sizeof max, "%d", w->cfg->dead_list_max);
    const char *argv[] = {"1", key_dead(), key_job_prefix(), max};
    rc_eval(w->redis, on_pruned, NULL, script_prune_dead, (int)ARRAY_LEN(argv), argv, NULL);
}

/* ---- the tick ---- */

static void on_tick(uv_timer_t *t)
{
    struct worker *w = t->data;
    /* While draining the heartbeat goes on (jobs still run); once drained it
     * has been deleted and must not come back. */
    if (w->exiting || !rc_is_up(w->redis))
        return;
    if (!w->own_list_recovered) {
        /* A previous process with our name (a restarted container) may have
         * left ids in our list: they go back to the queue before we fetch. */
        if (!w->own_recovery_running) {
            w->own_recovery_running = true;
            recover_logged(w, w->name, true);
        }
        return;
    }
    w->upkeep_ticks++;
    beat(w);
    promote(w);
    migrate(w);
    if (w->upkeep_ticks % RECOVERY_EVERY_TICKS == 0 && !w->recovery_running && !w->stopping &&
        util_mono_seconds() - w->redis_up_since >= w->cfg->heartbeat_seconds)
        read_registry(w);
    if (w->upkeep_ticks % ORPHAN_EVERY_TICKS == 0)
        check_orphans(w);
    if (w->upkeep_ticks % PRUNE_EVERY_TICKS == 0)
        prune_dead(w);
    fetcher_kick(w); /* a dependency may be back */
}

void upkeep_start(struct worker *w)
{
    started_at = util_mono_seconds();
    uv_timer_init(w->loop, &w->upkeep);
    w->upkeep.data = w;
    uv_timer_start(&w->upkeep, on_tick, 0, TICK_MS);
}

void upkeep_stop(struct worker *w)
{
    uv_timer_stop(&w->upkeep);
    uv_close((uv_handle_t *)&w->upkeep, NULL);
}

void upkeep_now(struct worker *w)
{
    uv_timer_start(&w->upkeep, on_tick, 0, TICK_MS);
}
