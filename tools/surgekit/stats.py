"""What Redis says about surge right now, and the dead-list requeue."""
import json

from .resp import RedisError

# Moves ids from the dead list to the back of the queue (oldest dead first),
# resetting each job for a fresh set of attempts, in one atomic step per call.
# KEYS[1] dead list, KEYS[2] queue; ARGV[1] how many at most (0: all),
# ARGV[2] the key prefix. A dead id whose hash has expired (a finished job's
# hash lives SURGE_RESULT_TTL_SECONDS) cannot run again: it is put back on the
# dead list where it was and counted. An id is queued once, even if an older
# worker left it on the dead list twice. Only commands of the ACL user
# `worker` (which runs this on a cluster). Returns {moved, expired}.
REQUEUE_DEAD_LUA = """
local limit = tonumber(ARGV[1])
local moved, kept, seen = 0, {}, {}
while limit == 0 or moved < limit do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  redis.call('LPUSH', KEYS[2], id)
  local job = ARGV[2] .. 'job:' .. id
  if seen[id] then
    redis.call('LREM', KEYS[2], 1, id)  -- a second copy: the id just pushed goes
  elseif redis.call('HEXISTS', job, 'type') == 1 then
    seen[id] = true
    -- The same fields in a new hash, which has no expiry: PERSIST is not
    -- among the commands of the ACL user `worker` that runs this on a cluster.
    local fields = redis.call('HGETALL', job)
    redis.call('DEL', job)
    redis.call('HSET', job, unpack(fields))
    redis.call('HSET', job, 'status', 'queued', 'attempts', 0)
    redis.call('HDEL', job, 'error', 'finished_at', 'retry_at')
    moved = moved + 1
  else
    redis.call('LREM', KEYS[2], 1, id)  -- the id just moved to the head
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


def snapshot(r, prefix="surge:"):
    """Sizes of surge's keys and the live workers (registered, heartbeat set).
    Uses only commands the ACL user `worker` may run, plus GET of the
    heartbeats where allowed: without it (the cluster's worker user) the
    workers are counted but their jobs in hand and concurrency are None."""
    names = registered_workers(r, prefix)
    cmds = [("LLEN", prefix + "queue"), ("ZCARD", prefix + "retry"), ("LLEN", prefix + "dead")]
    cmds += [("LLEN", prefix + "processing:" + n) for n in names]
    cmds += [("GET", prefix + "worker:" + n) for n in names]
    replies = r.pipeline(cmds)
    beats = replies[3 + len(names):]
    readable = not any(no_permission(x) for x in beats)
    if not readable:
        replies = replies[:3 + len(names)] + r.pipeline(
            [("EXISTS", prefix + "worker:" + n) for n in names])
    for x in replies:
        if isinstance(x, RedisError):
            raise x
    queue, retry, dead = replies[:3]
    lens = replies[3:3 + len(names)]
    beats = replies[3 + len(names):]
    workers = {}
    for name, v in zip(names, beats):
        if not v:  # stopped beating (None, or EXISTS 0): its list waits for recovery
            continue
        workers[name] = heartbeat_info(v) if readable else {}
    return {
        "queue": queue,
        "retry": retry,
        "dead": dead,
        "processing": sum(lens),
        "workers": len(workers),
        "in_flight": sum(int(w.get("in_flight", 0) or 0) for w in workers.values()) if readable else None,
        "concurrency": sum(int(w.get("concurrency", 0) or 0) for w in workers.values()) if readable else None,
        "worker_names": sorted(workers),
        "worker_info": workers,
    }


def where_is(r, job_id, prefix="surge:"):
    """Where the id sits in Redis: a list of human-readable places. Lists
    and the retry set are read whole (LRANGE, ZRANGEBYSCORE), which the ACL
    user `worker` may do, where LPOS and ZSCORE are not allowed."""
    places = []
    queue = r.call("LRANGE", prefix + "queue", 0, -1)
    if job_id in queue:
        n = len(queue)
        places.append(f"{prefix}queue, {n - queue.index(job_id)} from the end that workers take first (of {n})")
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
    moved, expired = r.call("EVAL", REQUEUE_DEAD_LUA, 2, prefix + "dead", prefix + "queue",
                            limit, prefix)
    return moved, expired
