"""What Redis says about surge right now, and the dead-list requeue."""
import json

from .resp import RedisError

# The job types, each with its own queue: {prefix}queue:{type} (common/job.c).
JOB_TYPES = ("read", "burn")


def queue_key(prefix, job_type):
    return f"{prefix}queue:{job_type}"


def shared_queue_key(prefix):
    """The one queue of both types before each type had its own; workers
    move what an older version still puts there to the queue of its type."""
    return prefix + "queue"


# Moves ids from the dead list to the back of the queue of their type (oldest
# dead first), resetting each job for a fresh set of attempts, in one atomic
# step per call. KEYS[1] dead list, then the queue of each type in the order
# of ARGV[3...], the type names; ARGV[1] how many at most (0: all), ARGV[2]
# the key prefix. A job of a type named nowhere goes to the first queue, as
# the workers do. A dead id whose hash has expired (a finished job's hash
# lives SURGE_RESULT_TTL_SECONDS) cannot run again: it is put back on the dead
# list where it was and counted. An id is queued once, even if an older
# worker left it on the dead list twice. Only commands of the ACL user
# `worker` (which runs this on a cluster). Returns {moved, expired}.
REQUEUE_DEAD_LUA = """
local limit = tonumber(ARGV[1])
local queue_of = {}
for i = 3, #ARGV do queue_of[ARGV[i]] = KEYS[i - 1] end
local moved, kept, seen = 0, {}, {}
while limit == 0 or moved < limit do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  local job = ARGV[2] .. 'job:' .. id
  local t = redis.call('HGET', job, 'type')
  if seen[id] then
    -- a second copy of an id just queued: dropped
  elseif t then
    seen[id] = true
    -- The same fields in a new hash, which has no expiry: PERSIST is not
    -- among the commands of the ACL user `worker` that runs this on a cluster.
    local fields = redis.call('HGETALL', job)
    redis.call('DEL', job)
    redis.call('HSET', job, unpack(fields))
    redis.call('HSET', job, 'status', 'queued', 'attempts', 0)
    redis.call('HDEL', job, 'error', 'finished_at', 'retry_at')
    redis.call('LPUSH', queue_of[t] or KEYS[2], id)
    moved = moved + 1
  else
    kept[#kept + 1] = id
  end
end
for i = #kept, 1, -1 do redis.call('RPUSH', KEYS[1], kept[i]) end
return {moved, #kept}
"""


def heartbeat_info(value):
    try:
        d = json.loads(value) if value else {}
        return d if isinstance(d, dict) else {}
    except ValueError:
        return {}


def no_permission(reply):
    """An error reply saying the ACL user may not run the command."""
    return isinstance(reply, RedisError) and str(reply).startswith("NOPERM")


def registered_workers(r, prefix="surge:"):
    """Names in the worker registry (surge:workers: every worker that beats,
    and one that stopped until another has recovered its list). ZRANGEBYSCORE:
    the ACL user `worker` may not run ZRANGE."""
    return r.call("ZRANGEBYSCORE", prefix + "workers", "-inf", "+inf") or []


def _by_type(value):
    """{type: n} from a heartbeat's in_flight or concurrency. A worker of an
    older version gives one number for both types: not counted by type."""
    if not isinstance(value, dict):
        return {t: 0 for t in JOB_TYPES}
    out = {}
    for t in JOB_TYPES:
        try:
            out[t] = int(value.get(t, 0) or 0)
        except (TypeError, ValueError):
            out[t] = 0
    return out


def snapshot(r, prefix="surge:"):
    """Sizes of surge's keys and the live workers (registered, heartbeat set).
    Uses only commands the ACL user `worker` may run, plus GET of the
    heartbeats where allowed: without it (the cluster's worker user) the
    workers are counted but their jobs in hand and concurrency are None.
    queue is the ids waiting on every type's queue, queues the same by type;
    in_flight and concurrency are by type."""
    names = registered_workers(r, prefix)
    fixed = [("LLEN", queue_key(prefix, t)) for t in JOB_TYPES]
    fixed += [("ZCARD", prefix + "retry"), ("LLEN", prefix + "dead")]
    nf = len(fixed)
    cmds = fixed + [("LLEN", prefix + "processing:" + n) for n in names]
    cmds += [("GET", prefix + "worker:" + n) for n in names]
    replies = r.pipeline(cmds)
    beats = replies[nf + len(names):]
    readable = not any(no_permission(x) for x in beats)
    if not readable:
        replies = replies[:nf + len(names)] + r.pipeline(
            [("EXISTS", prefix + "worker:" + n) for n in names])
    for x in replies:
        if isinstance(x, RedisError):
            raise x
    queues = dict(zip(JOB_TYPES, replies[:len(JOB_TYPES)]))
    retry, dead = replies[len(JOB_TYPES):nf]
    lens = replies[nf:nf + len(names)]
    beats = replies[nf + len(names):]
    workers = {}
    for name, v in zip(names, beats):
        if not v:  # stopped beating (None, or EXISTS 0): its list waits for recovery
            continue
        workers[name] = heartbeat_info(v) if readable else {}

    def total(field):
        if not readable:
            return None
        per = [_by_type(w.get(field)) for w in workers.values()]
        return {t: sum(p[t] for p in per) for t in JOB_TYPES}
    return {
        "queue": sum(queues.values()),
        "queues": queues,
        "retry": retry,
        "dead": dead,
        "processing": sum(lens),
        "workers": len(workers),
        "in_flight": total("in_flight"),
        "concurrency": total("concurrency"),
        "worker_names": sorted(workers),
        "worker_info": workers,
    }


def where_is(r, job_id, prefix="surge:"):
    """Where the id sits in Redis: a list of human-readable places. Lists
    and the retry set are read whole (LRANGE, ZRANGEBYSCORE), which the ACL
    user `worker` may do, where LPOS and ZSCORE are not allowed."""
    places = []
    for key in [queue_key(prefix, t) for t in JOB_TYPES] + [shared_queue_key(prefix)]:
        queue = r.call("LRANGE", key, 0, -1)
        if job_id in queue:
            n = len(queue)
            places.append(f"{key}, {n - queue.index(job_id)} from the end that workers take "
                          f"first (of {n})")
    retry = r.call("ZRANGEBYSCORE", prefix + "retry", "-inf", "+inf", "WITHSCORES")
    due = dict(zip(retry[0::2], retry[1::2]))
    if job_id in due:
        places.append(f"{prefix}retry, due at {float(due[job_id]) / 1000:.3f} (unix time)")
    if job_id in r.call("LRANGE", prefix + "dead", 0, -1):
        places.append(f"{prefix}dead")
    for worker in registered_workers(r, prefix):
        k = prefix + "processing:" + worker
        if job_id in r.call("LRANGE", k, 0, -1):
            alive = r.call("EXISTS", prefix + "worker:" + worker) == 1
            places.append(f"{k} (worker {worker} is {'alive' if alive else 'NOT beating: its list will be recovered'})")
    return places


def requeue_dead(r, prefix="surge:", limit=0):
    queues = [queue_key(prefix, t) for t in JOB_TYPES]
    moved, expired = r.call("EVAL", REQUEUE_DEAD_LUA, 1 + len(queues), prefix + "dead", *queues,
                            limit, prefix, *JOB_TYPES)
    return moved, expired
