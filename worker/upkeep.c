/* upkeep: what a worker does every second besides running jobs.
 *   - heartbeat: SET surge:worker:{name} with a TTL of SURGE_HEARTBEAT_SECONDS;
 *     renewed from the event loop, never from a burning thread, so a busy
 *     worker never looks dead.
 *   - retries: moves ids whose backoff is over from surge:retry to the queue.
 *   - recovery: finds processing lists whose worker's heartbeat has expired
 *     and moves their ids back to the queue in one script (no id is lost
 *     between two commands).
 *   - orphans: an id in our own list that we do not hold (its BLMOVE reply
 *     was lost with a connection) is put back after being seen twice. */
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
#define SCAN_EVERY_TICKS 3
#define ORPHAN_EVERY_TICKS 5

static double started_at;

static void ignore_reply(redisReply *reply, const char *err, void *arg)
{
    (void)reply;
    (void)err;
    (void)arg;
}

static void beat_with(struct worker *w, rc_reply_fn cb, void *arg);

static void beat(struct worker *w)
{
    beat_with(w, ignore_reply, NULL);
}

static void beat_with(struct worker *w, rc_reply_fn cb, void *arg)
{
    struct buf key = {0}, val = {0};
    struct json_writer jw;
    jw_init(&jw, &val);
    jw_object_begin(&jw);
    jw_key_int(&jw, "pid", (int64_t)getpid());
    jw_key_int(&jw, "in_flight", w->in_flight);
    jw_key_int(&jw, "concurrency", w->cfg->worker_concurrency);
    jw_key(&jw, "uptime_seconds");
    jw_double(&jw, util_mono_seconds() - started_at, 0);
    jw_object_end(&jw);
    rc_command(w->redis, cb, arg, "SET %s %s EX %d", w->heartbeat.data, val.data,
               w->cfg->heartbeat_seconds);
    buf_free(&key);
    buf_free(&val);
}

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
    rc_command(w->redis, on_promoted, NULL, "EVAL %s 2 %s %s %s %s", script_promote, key_retry(),
               key_queue(), now, keys_prefix());
}

/* ---- recovery of dead workers' lists ---- */

static void on_first_beat(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR)
        return; /* the next tick tries again */
    w->own_list_recovered = true;
    fetcher_kick(w);
}

struct recovery {
    struct worker *w;
    bool own;
    char worker[160];
};

static void on_recovered(redisReply *reply, const char *err, void *arg)
{
    struct recovery *r = arg;
    if (r->own) {
        r->w->own_recovery_running = false;
        if (reply && reply->type == REDIS_REPLY_INTEGER) {
            /* The first fetch waits until Redis holds our heartbeat, so no
             * one ever sees us hold a job without it. */
            beat_with(r->w, on_first_beat, r->w);
        }
    }
    if (!reply)
        log_warn("recovery_failed", "worker %s: %s", r->worker, err);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0 && !r->own)
        metrics_add(sm.jobs_recovered, NULL, (double)reply->integer);
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        log_warn("jobs_recovered",
                 "worker %s stopped beating; %lld job(s) it held are back on the queue",
                 r->worker, reply->integer);
    free(r);
}

static void recover(struct worker *w, const char *worker_name, bool force)
{
    struct recovery *r = xcalloc(1, sizeof *r);
    r->w = w;
    r->own = force;
    snprintf(r->worker, sizeof r->worker, "%s", worker_name);
    struct buf hb = {0}, proc = {0};
    key_heartbeat(&hb, worker_name);
    key_processing(&proc, worker_name);
    rc_command(w->redis, on_recovered, r, "EVAL %s 3 %s %s %s %s %s", script_recover, hb.data,
               proc.data, key_queue(), force ? "1" : "0", keys_prefix());
    buf_free(&hb);
    buf_free(&proc);
}

static void scan_from(struct worker *w, const char *cursor);

static void on_scan(redisReply *reply, const char *err, void *arg)
{
    (void)err;
    struct worker *w = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 || w->stopping) {
        w->scan_running = false;
        return;
    }
    const redisReply *keys = reply->element[1];
    struct buf prefix = {0};
    key_processing(&prefix, "");
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        if (strncmp(k, prefix.data, prefix.len) != 0)
            continue;
        const char *name = k + prefix.len;
        if (strcmp(name, w->name) != 0)
            recover(w, name, false);
    }
    buf_free(&prefix);
    const char *cursor = reply->element[0]->str;
    if (strcmp(cursor, "0") == 0)
        w->scan_running = false;
    else
        scan_from(w, cursor);
}

static void scan_from(struct worker *w, const char *cursor)
{
    struct buf pattern = {0};
    key_processing(&pattern, "*");
    rc_command(w->redis, on_scan, w, "SCAN %s MATCH %s COUNT 200", cursor, pattern.data);
    buf_free(&pattern);
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
            struct buf key = {0};
            key_job(&key, id);
            rc_command(w->redis, ignore_reply, NULL, "EVAL %s 3 %s %s %s %s 0", script_requeue,
                       key.data, w->processing.data, key_queue(), id);
            buf_free(&key);
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
            recover(w, w->name, true);
        }
        return;
    }
    w->upkeep_ticks++;
    beat(w);
    promote(w);
    if (w->upkeep_ticks % SCAN_EVERY_TICKS == 0 && !w->scan_running) {
        w->scan_running = true;
        scan_from(w, "0");
    }
    if (w->upkeep_ticks % ORPHAN_EVERY_TICKS == 0)
        check_orphans(w);
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
