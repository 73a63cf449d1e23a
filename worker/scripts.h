/* scripts: the Lua scripts that move a job between states atomically.
 * Every change of a job's state and lists happens in exactly one script, so
 * a crash between two Redis commands can never lose or duplicate an id. */
#ifndef SURGE_WORKER_SCRIPTS_H
#define SURGE_WORKER_SCRIPTS_H

/* KEYS: job, processing, dead. ARGV: worker, started_at, id, ttl, error.
 * Marks the job running and counts the attempt; returns {type, params,
 * attempts}, or "missing" after moving an unreadable job to the dead list. */
extern const char script_start[];
/* KEYS: job, processing. ARGV: id, result, finished_at, ttl. */
extern const char script_succeed[];
/* KEYS: job, processing, retry, dead. ARGV: id, error, finished_at, ttl,
 * max_attempts, retry_at_ms (0 = permanent failure, no retry).
 * Returns "retry", "failed" or "dead". */
extern const char script_fail[];
/* KEYS: job, processing, queue. ARGV: id, uncount ("1": the attempt does not
 * count — a burn cut short by a graceful shutdown; "0": an orphan, whose
 * attempt was never counted or must stay counted). Puts a job we hold back at
 * the head of the queue. */
extern const char script_requeue[];
/* KEYS: retry, queue. ARGV: now_ms, key prefix. Moves due retries to the
 * queue; returns how many. */
extern const char script_promote[];
/* KEYS: heartbeat, processing, queue. ARGV: force ("1" ignores the
 * heartbeat), key prefix. If the worker's heartbeat has expired, moves every id
 * it held back to the queue; returns how many. */
extern const char script_recover[];

#endif
