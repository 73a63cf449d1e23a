/* worker: the state of one surge-worker process, shared by its modules:
 * fetcher.c (takes ids off the queue of each type), runner.c (a job's life),
 * handlers.c (read and burn), upkeep.c (heartbeat, retries, recovery). */
#ifndef SURGE_WORKER_H
#define SURGE_WORKER_H

#include "app.h"
#include "buf.h"
#include "health.h"
#include "job.h"
#include "pg_pool.h"
#include "redis_client.h"

#include <stdbool.h>
#include <uv.h>

struct burn;

/* One job this worker holds, from its take until its outcome is written. */
struct job_run {
    struct worker *w;
    char id[JOB_ID_LEN + 1];
    enum job_type queue; /* the queue it came from: whose slot it holds */
    enum job_type type;  /* as the take read it from the job hash */
    struct job_request params;
    int attempts;
    char lease[24];    /* the fencing token of this take (scripts.h) */
    double started; /* monotonic */
    struct burn *burn; /* while a burn runs */
    bool requeue;      /* shutdown: put back instead of finishing */
    bool counted_in_progress;
    bool ended; /* its outcome is queued: its slot is free (fetcher.writing) */
    struct buf outcome_script_args; /* kept to retry writing the outcome */
    const char *action;             /* what that outcome does: succeed, fail, requeue */
    int sends;                      /* copies of it sent so far */
    struct job_run *outcome_next;   /* in the outcomes waiting for this turn's script */
    struct job_run *prev, *next;
};

/* Takes ids off the queue of one job type, while fewer than limit of its
 * jobs are in hand: up to its free slots' worth in one take script on the
 * main connection, and a BLMOVE on a connection of its own (BLMOVE blocks
 * its connection while it waits) only once a take found the queue empty. */
struct fetcher {
    struct worker *w;
    enum job_type type;
    struct rc *conn;
    int limit;        /* SURGE_WORKER_{READ,BURN}_CONCURRENCY */
    int running;      /* ids taken off this queue whose job has not ended */
    int writing;      /* jobs of this queue ended, their outcome not yet written:
                       * their slots are free, at most limit of them */
    bool outstanding; /* a take or a BLMOVE waits for its answer */
    bool queue_empty; /* the last take found the queue empty: wait on BLMOVE */
    bool paused;      /* a dependency is down: taking none (logged once) */
    uv_timer_t backoff;
};

struct worker {
    struct app *app;
    const struct cfg *cfg;
    uv_loop_t *loop;
    char name[128];           /* {hostname}-{pid} */
    struct buf processing;    /* surge:processing:{name} */
    struct buf heartbeat;     /* surge:worker:{name} */
    struct rc *redis;         /* job state, heartbeats */
    struct fetcher fetchers[JOB_TYPE_COUNT];
    struct pg_pool *pg;
    struct health *health;
    int pg_health_idx;
    struct job_run *runs;
    int in_flight; /* every job in hand, of both types */
    bool stopping;
    bool exiting; /* drained; closing down */
    double stop_started; /* monotonic time of SIGTERM */
    uv_timer_t last_call; /* fires 2 s before the grace period ends */
    uv_timer_t upkeep;
    uv_check_t kick_soon; /* fetcher_kick_soon */
    uv_check_t outcome_flush;                      /* sends this turn's outcomes */
    struct job_run *outcomes_head, *outcomes_tail; /* waiting for that */
    unsigned upkeep_ticks;
    bool recovery_running;  /* reading the registry for workers that stopped beating */
    double redis_up_since;  /* monotonic time the main Redis connection last came up */
    char orphans[16][JOB_ID_LEN + 1]; /* ids seen in our list but not held */
    int n_orphans;
    bool orphan_check_running;
    bool own_list_recovered; /* fetching starts only after this */
    bool own_recovery_running;
};

/* fetcher.c: each queue's fetcher asks for more work while it has room, we
 * are not stopping, and what its jobs need is up: the main Redis connection
 * for both types, and a PostgreSQL connection for reads. */
void fetcher_init(struct worker *w, struct app *app);
void fetcher_kick(struct worker *w);
/* The same once this loop turn's input is handled: the slots freed by all
 * the answers read in one turn go to one take. */
void fetcher_kick_soon(struct worker *w);
/* Why the worker takes no job of this type now, or NULL when it may. */
const char *fetcher_paused_why(const struct worker *w, enum job_type type);
/* True while a take or a BLMOVE of any queue waits for its answer. */
bool fetcher_outstanding(const struct worker *w);
/* Shutdown: no fetch is retried after a failure any more. */
void fetcher_stop(struct worker *w);
/* Closes the fetch connections and timers. */
void fetcher_close(struct worker *w);

/* runner.c: an id taken off the queue of type queue, with its answer in the
 * take (scripts.h, script_take; borrowed for the call only): starts its job,
 * or lets it go. */
void runner_begin(struct worker *w, enum job_type queue, const char *id, size_t len,
                  const redisReply *answer);

/* Ready to write outcomes (before the first job); runner_close closes what
 * that opened. */
void runner_init(struct worker *w);
void runner_close(struct worker *w);

/* How a failed attempt goes on. */
enum failure {
    FAILURE_RETRY,       /* retried after a backoff until the attempts are used up */
    FAILURE_PERMANENT,   /* not retried: the input can never succeed */
    FAILURE_NEVER_DEAD,  /* the platform's fault (a starved core), not the job's:
                          * retried after the backoff however many attempts it
                          * has used */
};

/* Appends {"code":...,"message":...} to out. */
void runner_error_json(struct buf *out, const char *code, const char *message);
/* Outcome of a handler: result is JSON text; error code/message for failures. */
void runner_succeed(struct job_run *run, const char *result_json);
void runner_fail(struct job_run *run, const char *code, const char *message, enum failure how);
/* Shutdown: cancels burns that cannot end within the grace period and puts
 * their jobs back on the queue. */
void runner_drain(struct worker *w);
/* Shortly before the grace period ends: every burn still running is
 * stopped and put back, so the worker can exit cleanly. */
void runner_last_call(struct worker *w);
/* A burn cancelled for shutdown has stopped: put its job back. */
void runner_requeue_cancelled(struct job_run *run);

/* handlers.c */
void handler_run(struct job_run *run);
void handler_cancel(struct job_run *run);
/* True for a type whose jobs cannot run without PostgreSQL (read). */
bool handler_needs_postgres(enum job_type type);
extern const struct pg_statement handler_statements[];
extern const int handler_statement_count;

/* upkeep.c: heartbeat, retry promotion, recovery of dead workers' jobs. */
void upkeep_start(struct worker *w);
void upkeep_stop(struct worker *w);
/* Runs the upkeep at once (Redis just came up). */
void upkeep_now(struct worker *w);
/* An id of our list that we will not run (it came in as we stopped taking
 * jobs) goes back to the head of the queue, unless a take holds it. */
void upkeep_put_back(struct worker *w, const char *id, size_t len);
/* Leaving, with no job in hand: whatever our list still holds goes back to
 * the queue, then our heartbeat and registry entry are deleted; done(reply,
 * err, arg) after. */
void upkeep_goodbye(struct worker *w, rc_reply_fn done, void *arg);

/* main.c: called whenever in_flight drops; finishes a shutdown when idle. */
void worker_maybe_exit(struct worker *w);

#endif
