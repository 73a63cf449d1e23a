/* handlers: what each job type does.
 *   read: one prepared SELECT by primary key; the result is the row as
 *         PostgreSQL's row_to_json gives it, or a permanent not_found.
 *   burn: a CPU loop on its own thread (burn.c) for the requested seconds of
 *         CPU time; starved of CPU past its wall-clock cap it fails with
 *         burn_starved and is retried, never dead for it. */
#include "burn.h"
#include "json_writer.h"
#include "log.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>

const struct pg_statement handler_statements[] = {
    {"item_by_id", "SELECT row_to_json(i)::text FROM items i WHERE i.id = $1", 1},
};
const int handler_statement_count = (int)ARRAY_LEN(handler_statements);

/* ---- read ---- */

static void on_item(PGresult *res, const char *err, void *arg)
{
    struct job_run *run = arg;
    if (!res) {
        runner_fail(run, "database_unavailable", err, FAILURE_RETRY);
        return;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        runner_fail(run, "database_error", PQresultErrorMessage(res), FAILURE_RETRY);
        return;
    }
    if (PQntuples(res) == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "item %lld does not exist", (long long)run->params.item_id);
        runner_fail(run, "not_found", msg, FAILURE_PERMANENT);
        return;
    }
    runner_succeed(run, PQgetvalue(res, 0, 0));
}

static void run_read(struct job_run *run)
{
    char id[24];
    snprintf(id, sizeof id, "%lld", (long long)run->params.item_id);
    const char *values[] = {id};
    pg_pool_exec(run->w->pg, "item_by_id", 1, values, on_item, run);
}

/* ---- burn ---- */

static void on_burned(double wall, double cpu, enum burn_end end, void *arg)
{
    struct job_run *run = arg;
    run->burn = NULL;
    if (end == BURN_CANCELLED && run->requeue) {
        runner_requeue_cancelled(run);
        return;
    }
    if (end == BURN_CAPPED) {
        /* Starved of CPU (a core shared with other work, or the process
         * stopped): the work asked for was not done, through no fault of the
         * job. Retried after the backoff (elsewhere or later the core may be
         * free; the backoff grows, so starved burns spread out), and never
         * dead for it. */
        char msg[160];
        snprintf(msg, sizeof msg,
                 "the burn got %.3f of its %d CPU seconds before its wall-clock cap of %.0f s",
                 cpu, run->params.seconds, burn_wall_cap(run->params.seconds));
        runner_fail(run, "burn_starved", msg, FAILURE_NEVER_DEAD);
        return;
    }
    struct buf out = {0};
    struct json_writer jw;
    jw_init(&jw, &out);
    jw_object_begin(&jw);
    jw_key_int(&jw, "seconds_requested", run->params.seconds);
    jw_key(&jw, "wall_seconds");
    jw_double(&jw, wall, 3);
    jw_key(&jw, "cpu_seconds");
    jw_double(&jw, cpu, 3);
    jw_object_end(&jw);
    runner_succeed(run, out.data);
    buf_free(&out);
}

static void run_burn(struct job_run *run)
{
    run->burn = burn_start(run->w->loop, run->params.seconds, on_burned, run);
    if (!run->burn)
        runner_fail(run, "no_thread", "could not start a thread for the burn", FAILURE_RETRY);
}

void handler_run(struct job_run *run)
{
    switch (run->type) {
    case JOB_READ:
        run_read(run);
        return;
    case JOB_BURN:
        run_burn(run);
        return;
    default:
        runner_fail(run, "unknown_type", "this worker does not know the job's type", FAILURE_PERMANENT);
    }
}

bool handler_needs_postgres(enum job_type type)
{
    return type == JOB_READ;
}

void handler_cancel(struct job_run *run)
{
    if (run->burn)
        burn_cancel(run->burn);
}
