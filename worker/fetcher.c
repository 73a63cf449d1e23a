/* fetcher: reliable fetch, one queue per job type. BLMOVE moves an id from
 * the queue of a type into this worker's processing list in one step, so an
 * id is always in one of the two lists, never only in our memory. Each type
 * has its own fetcher: its own connection (BLMOVE blocks the connection while
 * it waits), one BLMOVE at a time, and its own limit of jobs in hand
 * (SURGE_WORKER_BURN_CONCURRENCY, SURGE_WORKER_READ_CONCURRENCY), so a worker
 * whose burn slots are full still takes reads, and no read ever waits behind
 * a burn.
 * No id is taken while its job could not run or its outcome could not be
 * written: without the main Redis connection (job state, heartbeats) no
 * queue is read; without any PostgreSQL connection the read queue is not,
 * and burns, which need no database, go on. */
#include "log.h"
#include "worker.h"

#include <stdio.h>

/* How long one BLMOVE waits for work; short, so a shutdown is noticed soon. */
#define BLOCK_SECONDS 1
#define RETRY_MS 500

static void kick(struct fetcher *f);

static void on_backoff_over(uv_timer_t *t)
{
    kick(t->data);
}

static void on_fetched(redisReply *reply, const char *err, void *arg)
{
    struct fetcher *f = arg;
    struct worker *w = f->w;
    f->outstanding = false;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (!w->stopping) {
            log_debug("fetch_failed", "%s queue: %s", job_type_name(f->type),
                      reply ? reply->str : err);
            uv_timer_start(&f->backoff, on_backoff_over, RETRY_MS, 0);
        }
        worker_maybe_exit(w);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && fetcher_paused_why(w, f->type)) {
        /* A BLMOVE that was already waiting when a dependency went away. */
        log_info("job_put_back", "job %.*s came in as this worker stopped taking %s jobs (%s)",
                 reply->len > 64 ? 64 : (int)reply->len, reply->str, job_type_name(f->type),
                 fetcher_paused_why(w, f->type));
        upkeep_put_back(w, reply->str, (size_t)reply->len);
    } else if (reply->type == REDIS_REPLY_STRING) {
        runner_begin(w, f->type, reply->str, (size_t)reply->len);
    }
    /* NIL: nothing arrived within the block time; ask again. */
    kick(f);
    worker_maybe_exit(w);
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
    if (w->stopping || !w->own_list_recovered || f->outstanding || f->running >= f->limit ||
        uv_is_active((uv_handle_t *)&f->backoff) || !may_fetch(f))
        return;
    f->outstanding = true;
    rc_command_deadline(f->conn, BLOCK_SECONDS * 1000 + w->cfg->redis_timeout_ms, on_fetched, f,
                        "BLMOVE %s %s RIGHT LEFT %d", key_queue(f->type), w->processing.data,
                        BLOCK_SECONDS);
}

void fetcher_kick(struct worker *w)
{
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        kick(&w->fetchers[t]);
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
    for (int t = 0; t < JOB_TYPE_COUNT; t++)
        uv_timer_stop(&w->fetchers[t].backoff);
}

void fetcher_close(struct worker *w)
{
    for (int t = 0; t < JOB_TYPE_COUNT; t++) {
        uv_close((uv_handle_t *)&w->fetchers[t].backoff, NULL);
        rc_close(w->fetchers[t].conn, NULL, NULL);
    }
}
