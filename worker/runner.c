/* runner: the life of one job in this worker.
 *   take (fetcher.c: running, attempt counted, lease given) -> handler -> outcome
 * The id stays in our processing list until the outcome script removes it
 * in the same atomic step that records the outcome; the outcomes of the jobs
 * that finish in one loop turn go in one script (script_outcomes). Every outcome names the
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
#define OUTCOME_BATCH_MAX 64 /* outcomes in one script at most */
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
    if (run->ended)
        w->fetchers[run->queue].writing--;
    else
        w->fetchers[run->queue].running--;
    free(run);
    w->in_flight--;
    fetcher_kick_soon(w);
    worker_maybe_exit(w);
}

/* ---- writing the outcomes, retried until Redis takes them ---- */

/* An outcome is kept as its entry of script_outcomes, NUL-separated strings
 * (kind, keys, arguments), so it can be sent again unchanged if Redis is
 * away. The outcomes of the jobs that finish in one loop turn go in one
 * script (a batch); a batch whose answer is lost is sent again whole, and
 * each of its entries then finds its own write (written 0). */
static void outcome_add(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s) + 1);
}

struct outcome_batch {
    struct worker *w;
    uv_timer_t retry;
    int n;
    struct job_run *runs[OUTCOME_BATCH_MAX];
};

static void send_batch(struct outcome_batch *b);

static void batch_free(uv_handle_t *h)
{
    free(h->data);
}

static void on_batch_retry(uv_timer_t *t)
{
    send_batch(t->data);
}

/* An outcome's answer: {outcome, written} (scripts.h). */
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

/* The job's outcome is written (or its take was no longer current). */
static void outcome_done(struct job_run *run, const char *outcome, bool written)
{
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

static void on_batch(redisReply *reply, const char *err, void *arg)
{
    struct outcome_batch *b = arg;
    bool ok = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == (size_t)b->n;
    const char *outcome;
    bool written;
    for (size_t i = 0; ok && i < reply->elements; i++)
        ok = outcome_reply(reply->element[i], &outcome, &written);
    if (!ok) {
        for (int i = 0; i < b->n; i++)
            log_warn("outcome_not_written", "job %s: %s; trying again", b->runs[i]->id,
                     reply ? (reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected answer")
                           : err);
        uv_timer_start(&b->retry, on_batch_retry, OUTCOME_RETRY_MS, 0);
        return;
    }
    for (int i = 0; i < b->n; i++) {
        outcome_reply(reply->element[i], &outcome, &written);
        outcome_done(b->runs[i], outcome, written);
    }
    uv_close((uv_handle_t *)&b->retry, batch_free);
}

/* The number of strings in a NUL-separated argv buffer. */
static int count_strings(const struct buf *args)
{
    int n = 0;
    for (size_t i = 0; i < args->len; i++)
        n += args->data[i] == '\0';
    return n;
}

static void send_batch(struct outcome_batch *b)
{
    int argc = 3;
    for (int i = 0; i < b->n; i++)
        argc += 1 + count_strings(&b->runs[i]->outcome_script_args);
    const char **argv = xmalloc(sizeof *argv * (size_t)argc);
    size_t *lens = xmalloc(sizeof *lens * (size_t)argc);
    char (*counts)[12] = xmalloc(sizeof *counts * (size_t)b->n);
    argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = script_outcomes;
    argv[argc++] = "0";
    for (int i = 0; i < b->n; i++) {
        struct job_run *run = b->runs[i];
        const char *p = run->outcome_script_args.data;
        const char *end = p + run->outcome_script_args.len;
        run->sends++;
        argv[argc++] = p; /* the kind */
        p += strlen(p) + 1;
        snprintf(counts[i], sizeof counts[i], "%d", count_strings(&run->outcome_script_args) - 1);
        argv[argc++] = counts[i];
        for (; p < end; p += strlen(p) + 1)
            argv[argc++] = p;
    }
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    log_debug("outcomes_sent", "%d outcome(s) in one script", b->n);
    rc_command_argv(b->w->redis, on_batch, b, argc, argv, lens);
    free(argv);
    free(lens);
    free(counts);
}

/* Sends the outcomes gathered during this loop turn, OUTCOME_BATCH_MAX to a
 * script. */
static void on_outcome_flush(uv_check_t *c)
{
    struct worker *w = c->data;
    uv_check_stop(c);
    while (w->outcomes_head) {
        struct outcome_batch *b = xcalloc(1, sizeof *b);
        b->w = w;
        uv_timer_init(w->loop, &b->retry);
        b->retry.data = b;
        while (w->outcomes_head && b->n < OUTCOME_BATCH_MAX) {
            struct job_run *run = w->outcomes_head;
            w->outcomes_head = run->outcome_next;
            run->outcome_next = NULL;
            b->runs[b->n++] = run;
        }
        send_batch(b);
    }
    w->outcomes_tail = NULL;
}

/* Queues the run's outcome for this turn's script. Its job has ended: its
 * slot goes to the next take at once, while the outcome is written (the id
 * stays in our list, and the run in w->runs, until then). */
static void send_outcome(struct job_run *run)
{
    struct worker *w = run->w;
    if (!run->ended) {
        run->ended = true;
        w->fetchers[run->queue].running--;
        w->fetchers[run->queue].writing++;
        fetcher_kick_soon(w);
    }
    run->outcome_next = NULL;
    if (w->outcomes_tail)
        w->outcomes_tail->outcome_next = run;
    else
        w->outcomes_head = run;
    w->outcomes_tail = run;
    if (!uv_is_closing((uv_handle_t *)&w->outcome_flush))
        uv_check_start(&w->outcome_flush, on_outcome_flush);
}

void runner_init(struct worker *w)
{
    uv_check_init(w->loop, &w->outcome_flush);
    w->outcome_flush.data = w;
}

void runner_close(struct worker *w)
{
    uv_check_stop(&w->outcome_flush);
    uv_close((uv_handle_t *)&w->outcome_flush, NULL);
}

/* Starts the entry of an outcome: its kind (action names it in logs too),
 * the job's key and our processing list. */
static void outcome_begin(struct job_run *run, struct buf *job_key, const char *action)
{
    struct buf *b = &run->outcome_script_args;
    buf_reset(b);
    run->action = action;
    run->sends = 0;
    outcome_add(b, action);
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
    outcome_begin(run, &key, "succeed");
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
    outcome_begin(run, &key, "fail");
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
    outcome_begin(run, &key, "requeue");
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
