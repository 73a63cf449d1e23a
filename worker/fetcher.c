/* fetcher: reliable fetch. BLMOVE moves an id from the queue into this
 * worker's processing list in one step, so an id is always in one of the two
 * lists, never only in our memory. One BLMOVE at a time, on its own
 * connection (it blocks that connection while it waits).
 * No id is taken while a job could not run or its outcome could not be
 * written: without the main Redis connection (job state, heartbeats) or
 * without any PostgreSQL connection the ids wait in the queue. The queue is
 * shared by both job types, so a PostgreSQL outage pauses burns too. */
#include "log.h"
#include "worker.h"

/* How long one BLMOVE waits for work; short, so a shutdown is noticed soon. */
#define BLOCK_SECONDS 1
#define RETRY_MS 500

static void on_backoff_over(uv_timer_t *t)
{
    fetcher_kick(t->data);
}

static void on_fetched(redisReply *reply, const char *err, void *arg)
{
    struct worker *w = arg;
    w->fetch_outstanding = false;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        if (!w->stopping) {
            log_debug("fetch_failed", "%s", reply ? reply->str : err);
            uv_timer_start(&w->fetch_backoff, on_backoff_over, RETRY_MS, 0);
        }
        worker_maybe_exit(w);
        return;
    }
    if (reply->type == REDIS_REPLY_STRING && fetcher_paused_why(w)) {
        /* A BLMOVE that was already waiting when a dependency went away. */
        log_info("job_put_back", "job %.*s came in as this worker stopped taking jobs (%s)",
                 reply->len > 64 ? 64 : (int)reply->len, reply->str, fetcher_paused_why(w));
        upkeep_put_back(w, reply->str, (size_t)reply->len);
    } else if (reply->type == REDIS_REPLY_STRING) {
        runner_begin(w, reply->str, (size_t)reply->len);
    }
    /* NIL: nothing arrived within the block time; ask again. */
    fetcher_kick(w);
    worker_maybe_exit(w);
}

const char *fetcher_paused_why(const struct worker *w)
{
    if (!rc_is_up(w->redis))
        return "the main Redis connection is down";
    if (pg_pool_ready(w->pg) == 0)
        return "no PostgreSQL connection is open";
    return NULL;
}

/* Logs when taking jobs stops for a missing dependency, and when it resumes. */
static bool may_fetch(struct worker *w)
{
    const char *why = fetcher_paused_why(w);
    if (why && !w->fetch_paused)
        log_warn("fetch_paused", "%s: taking no job; jobs wait in the queue", why);
    else if (!why && w->fetch_paused)
        log_info("fetch_resumed", "taking jobs again");
    w->fetch_paused = why != NULL;
    return why == NULL;
}

void fetcher_kick(struct worker *w)
{
    if (w->stopping || !w->own_list_recovered || w->fetch_outstanding || w->in_flight >= w->cfg->worker_concurrency ||
        uv_is_active((uv_handle_t *)&w->fetch_backoff) || !may_fetch(w))
        return;
    w->fetch_outstanding = true;
    rc_command_deadline(w->fetch, BLOCK_SECONDS * 1000 + w->cfg->redis_timeout_ms, on_fetched, w,
                        "BLMOVE %s %s RIGHT LEFT %d", key_queue(), w->processing.data,
                        BLOCK_SECONDS);
}
