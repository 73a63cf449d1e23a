/* runner: the life of one job in this worker.
 *   take (fetcher.c: running, attempt counted, lease given) -> handler -> outcome script
 * The id stays in our processing list until the outcome script removes it
 * in the same atomic step that records the outcome. Every outcome names the
 * lease of our take: if we were taken for dead meanwhile (the job was put back
 * and maybe taken again), it changes nothing, and is counted and logged. */
#include "json_writer.h"
#include "log.h"
#include "scripts.h"
#include "surge_metrics.h"
#include "util.h"
#include "worker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTCOME_RETRY_MS 1000
#define OUTCOME_MAX_ARGS 24 /* EVAL, script, key count, keys, arguments */
#define BACKOFF_BASE_MS 1000
#define BACKOFF_MAX_MS 300000

static void iso_now(char out[32])
{
    util_format_iso8601(util_now_ms(), out, 32);
}

void runner_error_json(struct buf *out, const char *code, const char *message)
{
    struct json_writer jw;
    jw_init(&jw, out);
    jw_object_begin(&jw);
    jw_key_string(&jw, "code", code);
    jw_key_string(&jw, "message", message);
    jw_object_end(&jw);
}

static void run_free(struct job_run *run)
{
    struct worker *w = run->w;
    if (run->prev)
        run->prev->next = run->next;
    else
        w->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    buf_free(&run->outcome_script_args);
    w->fetchers[run->queue].running--;
    free(run);
    w->in_flight--;
    fetcher_kick_soon(w);
    worker_maybe_exit(w);
}

/* ---- writing the outcome, retried until Redis takes it ---- */

/* The outcome command is kept as argv in one buffer of NUL-separated strings
 * so it can be sent again unchanged if Redis is away. */
static void outcome_add(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s) + 1);
}

static void send_outcome(struct job_run *run);

static void close_free(uv_handle_t *h)
{
    free(h);
}

static void on_outcome_retry(uv_timer_t *t)
{
    struct job_run *run = t->data;
    uv_close((uv_handle_t *)t, close_free);
    send_outcome(run);
}

/* An outcome script's answer: {outcome, written} (scripts.h). */
static bool outcome_reply(const redisReply *reply, const char **outcome, bool *written)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_INTEGER)
        return false;
    *outcome = reply->element[0]->str;
    *written = reply->element[1]->integer == 1;
    return true;
}

static void on_outcome(redisReply *reply, const char *err, void *arg)
{
    struct job_run *run = arg;
    const char *outcome;
    bool written;
    if (!outcome_reply(reply, &outcome, &written)) {
        log_warn("outcome_not_written", "job %s: %s; trying again", run->id,
                 reply ? (reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer")
                       : err);
        uv_timer_t *t = xmalloc(sizeof *t);
        uv_timer_init(run->w->loop, t);
        t->data = run;
        uv_timer_start(t, on_outcome_retry, OUTCOME_RETRY_MS, 0);
        return;
    }
    double secs = util_mono_seconds() - run->started;
    const char *type = job_type_name(run->type);
    const char *labels[] = {type, outcome};
    if (run->counted_in_progress)
        metrics_add(sm.jobs_in_progress, labels, -1);
    if (!strcmp(outcome, "stale")) {
        surge_metrics_stale(type, run->action);
        log_warn("stale_outcome",
                 "job %s (%s): this worker's take (lease %s) is no longer current, so its %s "
                 "after %.3f s changed nothing%s",
                 run->id, type, run->lease, run->action, secs,
                 run->sends > 1 ? " (a copy sent again after a lost answer: the first one may "
                                  "have been written before the job was taken again)"
                                : "");
        run_free(run);
        return;
    }
    if (!written)
        log_info("outcome_already_written",
                 "job %s: its outcome (%s) was written already, by a copy whose answer was lost",
                 run->id, outcome);
    metrics_add(sm.jobs_finished, labels, 1);
    if (run->type != JOB_TYPE_UNKNOWN)
        metrics_observe(sm.job_duration, labels, secs);
    log_info("job_finished", "job %s (%s) %s after %.3f s, attempt %d", run->id, type, outcome,
             secs, run->attempts);
    run_free(run);
}

static void send_outcome(struct job_run *run)
{
    run->sends++;
    const char *argv[OUTCOME_MAX_ARGS];
    size_t lens[OUTCOME_MAX_ARGS];
    int argc = 0;
    const char *p = run->outcome_script_args.data;
    const char *end = p + run->outcome_script_args.len;
    while (p < end && argc < OUTCOME_MAX_ARGS) {
        argv[argc] = p;
        lens[argc] = strlen(p);
        p += lens[argc++] + 1;
    }
    rc_command_argv(run->w->redis, on_outcome, run, argc, argv, lens);
}

/* Starts the argv of an outcome script: EVAL, the script, its number of
 * keys, the job's key and our processing list; action names it in logs. */
static void outcome_begin(struct job_run *run, const char *script, int nkeys, struct buf *job_key,
                          const char *action)
{
    struct buf *b = &run->outcome_script_args;
    buf_reset(b);
    run->action = action;
    run->sends = 0;
    char n[8];
    snprintf(n, sizeof n, "%d", nkeys);
    outcome_add(b, "EVAL");
    outcome_add(b, script);
    outcome_add(b, n);
    key_job(job_key, run->id);
    outcome_add(b, job_key->data);
    outcome_add(b, run->w->processing.data);
}

void runner_succeed(struct job_run *run, const char *result_json)
{
    struct buf key = {0};
    char now[32], ttl[16];
    iso_now(now);
    snprintf(ttl, sizeof ttl, "%d", run->w->cfg->result_ttl_seconds);
    outcome_begin(run, script_succeed, 2, &key, "succeed");
    outcome_add(&run->outcome_script_args, run->id);
    outcome_add(&run->outcome_script_args, run->lease);
    outcome_add(&run->outcome_script_args, result_json);
    outcome_add(&run->outcome_script_args, now);
    outcome_add(&run->outcome_script_args, ttl);
    buf_free(&key);
    send_outcome(run);
}

/* Exponential backoff with full jitter: 1 s, 2 s, 4 s... capped, times a
 * random factor in [0.5, 1), so retries of many jobs do not arrive together. */
static int64_t retry_delay_ms(int attempts)
{
    double base = BACKOFF_BASE_MS * pow(2.0, attempts > 1 ? attempts - 1 : 0);
    if (base > BACKOFF_MAX_MS)
        base = BACKOFF_MAX_MS;
    return (int64_t)(base * (0.5 + 0.5 * ((double)rand() / ((double)RAND_MAX + 1.0))));
}

void runner_fail(struct job_run *run, const char *code, const char *message, enum failure how)
{
    struct worker *w = run->w;
    struct buf key = {0}, err = {0};
    char now[32], ttl[16], max[16], retry_at[24], dead_max[16];
    iso_now(now);
    snprintf(ttl, sizeof ttl, "%d", w->cfg->result_ttl_seconds);
    snprintf(max, sizeof max, "%d", w->cfg->max_attempts);
    snprintf(dead_max, sizeof dead_max, "%d", w->cfg->dead_list_max);
    snprintf(retry_at, sizeof retry_at, "%lld",
             how == FAILURE_PERMANENT ? 0LL
                                      : (long long)(util_now_ms() + retry_delay_ms(run->attempts)));
    runner_error_json(&err, code, message);
    log_warn("job_failed", "job %s (%s) attempt %d: %s: %s", run->id, job_type_name(run->type),
             run->attempts, code, message);
    outcome_begin(run, script_fail, 4, &key, "fail");
    /* KEYS 3 and 4 come after the processing list. */
    outcome_add(&run->outcome_script_args, key_retry());
    outcome_add(&run->outcome_script_args, key_dead());
    outcome_add(&run->outcome_script_args, run->id);
    outcome_add(&run->outcome_script_args, run->lease);
    outcome_add(&run->outcome_script_args, err.data);
    outcome_add(&run->outcome_script_args, now);
    outcome_add(&run->outcome_script_args, ttl);
    outcome_add(&run->outcome_script_args, max);
    outcome_add(&run->outcome_script_args, retry_at);
    outcome_add(&run->outcome_script_args, dead_max);
    outcome_add(&run->outcome_script_args, how == FAILURE_NEVER_DEAD ? "0" : "1");
    buf_free(&key);
    buf_free(&err);
    send_outcome(run);
}

/* Puts the job back at the head of the queue of its type, without counting
 * the attempt (our own shutdown cut it short, or it came off another type's
 * queue); why says which, in the log. */
static void requeue(struct job_run *run, const char *why)
{
    struct buf key = {0};
    outcome_begin(run, script_requeue, 3, &key, "requeue");
    outcome_add(&run->outcome_script_args, key_queue(run->type));
    outcome_add(&run->outcome_script_args, run->id);
    outcome_add(&run->outcome_script_args, run->lease);
    buf_free(&key);
    log_info("job_requeued", "job %s (%s) goes back on %s: %s", run->id,
             job_type_name(run->type), key_queue(run->type), why);
    send_outcome(run);
}

/* ---- starting ---- */

/* Grace time left for the drain, with a margin to write the outcome. */
static double drain_time_left(const struct worker *w)
{
    return w->cfg->shutdown_grace_seconds - (util_mono_seconds() - w->stop_started) - 2.0;
}

/* Starts one job from its answer in the take (scripts.h, script_take). */
static void start(struct job_run *run, const redisReply *reply)
{
    if (reply->type == REDIS_REPLY_STRING && !strncmp(reply->str, "stale", 5)) {
        /* Put back by an orphan check, or not waiting to run: not ours. */
        const char *type = reply->len > 6 ? reply->str + 6 : "";
        surge_metrics_stale(type, "take");
        log_warn("stale_outcome",
                 "job %s: taken off the queue but no longer in this worker's list, or not "
                 "waiting to run: left alone",
                 run->id);
        run_free(run);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING) {
        log_error("job_unreadable", "job %s has no readable hash; moved to the dead list",
                  run->id);
        run_free(run);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 5) {
        /* The id stays in our processing list; upkeep puts it back. */
        log_error("job_start_failed", "job %s: unexpected answer to the take", run->id);
        run_free(run);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++)
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            log_error("job_start_failed", "job %s: unexpected answer to the take", run->id);
            run_free(run);
            return;
        }
    const redisReply *type = reply->element[0], *params = reply->element[1];
    run->attempts = (int)strtol(reply->element[2]->str, NULL, 10);
    snprintf(run->lease, sizeof run->lease, "%s", reply->element[4]->str);
    run->type = job_type_parse(type->str, (size_t)type->len);
    if (run->type == JOB_TYPE_UNKNOWN) {
        /* Count it as failed for good: no worker will ever know this type. */
        runner_fail(run, "unknown_type", "this worker does not know the job's type", FAILURE_PERMANENT);
        return;
    }
    struct job_error jerr;
    if (params->len == 0 ||
        job_parse_params(run->type, params->str, (size_t)params->len,
                         run->w->cfg->burn_default_seconds, run->w->cfg->burn_max_seconds,
                         &run->params, &jerr)) {
        runner_fail(run, "bad_params", params->len ? jerr.message : "no params", FAILURE_PERMANENT);
        return;
    }
    if (run->type != run->queue) {
        /* Put on another type's queue by hand: run, it would hold a slot of
         * that type, and burns past their limit would share the cores. */
        requeue(run, "it came off the queue of another type");
        return;
    }
    /* The take was answered after a dependency went away (its job could not
     * run) or after a shutdown began (a stopping worker takes nothing): back
     * at the head of its queue, the attempt not counted. */
    const char *paused = fetcher_paused_why(run->w, run->type);
    if (paused || run->w->stopping) {
        requeue(run, paused ? paused : "this worker is stopping");
        return;
    }
    log_debug("job_started", "job %s (%s) attempt %d", run->id, job_type_name(run->type),
              run->attempts);
    const char *labels[] = {job_type_name(run->type)};
    int64_t created_ms;
    if (util_parse_iso8601(reply->element[3]->str, &created_ms) == 0)
        metrics_observe(sm.job_wait, labels, (double)(util_now_ms() - created_ms) / 1000.0);
    metrics_add(sm.jobs_in_progress, labels, 1);
    run->counted_in_progress = true;
    handler_run(run);
}

void runner_begin(struct worker *w, enum job_type queue, const char *id, size_t len,
                  const redisReply *answer)
{
    struct job_run *run = xcalloc(1, sizeof *run);
    run->w = w;
    run->queue = queue;
    w->fetchers[queue].running++;
    snprintf(run->id, sizeof run->id, "%.*s", (int)(len < JOB_ID_LEN ? len : JOB_ID_LEN), id);
    run->started = util_mono_seconds();
    run->type = JOB_TYPE_UNKNOWN;
    run->next = w->runs;
    if (w->runs)
        w->runs->prev = run;
    w->runs = run;
    w->in_flight++;
    start(run, answer);
}

void runner_last_call(struct worker *w)
{
    for (struct job_run *run = w->runs; run; run = run->next) {
        if (run->type == JOB_BURN && run->burn && !run->requeue) {
            log_warn("burn_cut_short", "job %s: the grace period is nearly over", run->id);
            run->requeue = true;
            handler_cancel(run);
        }
    }
}

void runner_drain(struct worker *w)
{
    for (struct job_run *run = w->runs; run; run = run->next) {
        if (run->type != JOB_BURN || !run->burn)
            continue;
        /* At best the burn ends when its CPU seconds are used; on a shared
         * core later than that. */
        double left = run->params.seconds - (util_mono_seconds() - run->started);
        if (left > drain_time_left(w)) {
            run->requeue = true;
            handler_cancel(run);
        }
    }
}

void runner_requeue_cancelled(struct job_run *run)
{
    requeue(run, "this worker is stopping");
}
