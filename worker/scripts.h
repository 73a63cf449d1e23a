/* scripts: the Lua scripts that move a job between states atomically.
 * Every change of a job's state and lists happens in exactly one script, so
 * a crash between two Redis commands can never lose or duplicate an id.
 *
 * Ownership (docs/architecture.md, "Who may write a job"): each take of a job
 * gets a fencing token, the job hash's `lease`, which the take script
 * increments and returns. Outcome and requeue scripts name the lease they act
 * for and change nothing unless the job still runs under it; a worker found
 * dead has its takes revoked (the lease moves on) as its ids go back to the
 * queue. Outcome scripts answer {outcome, written}: written is 0 when they
 * changed nothing, either because a copy of the same call ran before (its
 * answer was lost with a connection; the outcome is the one it recorded) or
 * because the take is no longer current (outcome "stale"). */
#ifndef SURGE_WORKER_SCRIPTS_H
#define SURGE_WORKER_SCRIPTS_H

/* Take. KEYS: the queue of a type, processing, dead. ARGV: worker,
 * started_at, ttl, error, dead_max, job key prefix, n, then ids already in
 * our list (a BLMOVE moved them). Starts each of those, then moves up to n
 * ids from the queue to our list (LMOVE, oldest first) and starts each in the
 * same step. Starting an id marks its job running, counts the attempt and
 * gives the take its lease. Returns {empty, {{id, answer}...}}: empty is 1
 * when the queue ran out before n ids; answer is {type, params, attempts,
 * created_at, lease}, or "missing" after moving an unreadable job to the dead
 * list, or "stale" when the id is no longer in our list, "stale {type}" when
 * the job is not waiting (both change nothing). */
extern const char script_take[];
/* The outcomes of several jobs, each applied as if alone. No KEYS; ARGV is
 * a run of entries: kind, the number of fields that follow, then the kind's
 * keys and arguments. Returns one {outcome, written} per entry, in order.
 *   succeed: keys job, processing; arguments id, lease, result,
 *     finished_at, ttl. Outcome "succeeded" or "stale".
 *   fail: keys job, processing, retry, dead; arguments id, lease, error,
 *     finished_at, ttl, max_attempts, retry_at_ms (0 = permanent failure, no
 *     retry), dead_max, may_die ("0": retried however many attempts it has
 *     used). Outcome "retry", "failed", "dead" or "stale".
 *   requeue: keys job, processing, the queue of the job's type; arguments
 *     id, lease. A take cut short by this worker's shutdown: the id goes back
 *     at the head of that queue and the attempt does not count. Outcome
 *     "requeued" or "stale". */
extern const char script_outcomes[];
/* KEYS: retry. ARGV: now_ms, job key prefix, queue key prefix. Moves due
 * retries to the queue of their type; returns how many. */
extern const char script_promote[];
/* KEYS: heartbeat, processing, workers. ARGV: mode, job key prefix, worker,
 * queue key prefix. Puts the ids of a worker's list back on the queue of
 * their type (see put_back in scripts.c). mode "dead": only if its heartbeat
 * has expired, and then the worker leaves the registry; "start": our own list
 * at start; "exit": our own list as we leave, then our heartbeat and registry
 * entry go. Returns {moved, {type of each stale entry dropped}}. */
extern const char script_recover[];
/* KEYS: processing. ARGV: id, job key prefix, worker, queue key prefix. The
 * same for one id of our own list that no runner holds. Returns {moved,
 * {types}}. */
extern const char script_orphan[];
/* KEYS: heartbeat, workers. ARGV: value, ttl_seconds, now_ms, worker.
 * Renews the heartbeat and the worker's score in the registry; returns 1 if
 * the worker was not in the registry (first beat, or taken for dead). */
extern const char script_beat[];
/* KEYS: dead. ARGV: job key prefix, dead_max. Drops ids whose job hash has
 * expired from the old end of the dead list, then trims it to dead_max;
 * returns how many expired ids went. */
extern const char script_prune_dead[];
/* KEYS: the shared queue of versions before each type had its own
 * (key_shared_queue). ARGV: job key prefix, queue key prefix. Moves up to
 * 100 of its ids, oldest first, to the end of the queue of their type that
 * workers take first; returns how many. */
extern const char script_migrate[];

#endif
