"""What Redis says about surge right now, and the dead-list requeue."""
import json

from .resp import RedisError

# Moves ids from the dead list to the back of the queue (oldest dead first),
# resetting each job for a fresh set of attempts, in one atomic step per call.
# KEYS[1] dead list, KEYS[2] queue; ARGV[1] how many at most (0: all),
# ARGV[2] the key prefix. A dead id whose hash has expired (a finished job's
# hash lives SURGE_RESULT_TTL_SECONDS) cannot run again: it is put back on the
# dead list where it was and counted. An id is queued once, even if an older
# worker left it on the dead list twice. Returns {moved, expired}.
REQUEUE_DEAD_LUA = """
local limit = tonumber(ARGV[1])
local moved, kept, seen = 0, {}, {}
while limit == 0 or moved < limit do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  local job = ARGV[2] .. 'job:' .. id
  if seen[id] then
    redis.call('LPOP', KEYS[2])
  elseif redis.call('HEXISTS', job, 'type') == 1 then
    seen[id] = true
    redis.call('HSET', job, 'status', 'queued', 'attempts', 0)
    redis.call('HDEL', job, 'error', 'finished_at', 'retry_at')
    redis.call('PERSIST', job)
    moved = moved + 1
  else
    redis.call('LPOP', KEYS[2])
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


def registered_workers(r, prefix="surge:"):
    """Names in the worker registry (surge:workers: every worker that beats,
    and one that stopped until another has recovered its list)."""
    return r.call("ZRANGE", prefix + "workers", 0, -1) or []


def snapshot(r, prefix="surge:"):
    """Sizes of surge's keys and the live workers (registered, heartbeat set)."""
    names = registered_workers(r, prefix)
    cmds = [("LLEN", prefix + "queue"), ("ZCARD", prefix + "retry"), ("LLEN", prefix + "dead")]
    cmds += [("GET", prefix + "worker:" + n) for n in names]
    cmds += [("LLEN", prefix + "processing:" + n) for n in names]
    replies = r.pipeline(cmds)
    for x in replies:
        if isinstance(x, RedisError):
            raise x
    queue, retry, dead = replies[:3]
    beats = replies[3:3 + len(names)]
    lens = replies[3 + len(names):]
    workers = {}
    for name, v in zip(names, beats):
        if v is None:  # stopped beating: its list waits for recovery
            continue
        workers[name] = heartbeat_info(v)
    return {
        "queue": queue,
        "retry": retry,
        "dead": dead,
        "processing": sum(lens),
        "workers": len(workers),
        "in_flight": sum(int(w.get("in_flight", 0) or 0) for w in workers.values()),
        "concurrency": sum(int(w.get("concurrency", 0) or 0) for w in workers.values()),
        "worker_names": sorted(workers),
        "worker_info": workers,
    }


def where_is(r, job_id, prefix="surge:"):
    """Where the id sits in Redis: a list of human-readable places."""
    places = []
    pos = r.call("LPOS", prefix + "queue", job_id)
    if pos is not None:
        n = r.call("LLEN", prefix + "queue")
        places.append(f"{prefix}queue, {n - pos} from the end that workers take first (of {n})")
    score = r.call("ZSCORE", prefix + "retry", job_id)
    if score is not None:
        places.append(f"{prefix}retry, due at {float(score) / 1000:.3f} (unix time)")
    if r.call("LPOS", prefix + "dead", job_id) is not None:
        places.append(f"{prefix}dead")
    for worker in registered_workers(r, prefix):
        k = prefix + "processing:" + worker
        if r.call("LPOS", k, job_id) is not None:
            alive = r.call("EXISTS", prefix + "worker:" + worker) == 1
            places.append(f"{k} (worker {worker} is {'alive' if alive else 'NOT beating: its list will be recovered'})")
    return places


def requeue_dead(r, prefix="surge:", limit=0):
    moved, expired = r.call("EVAL", REQUEUE_DEAD_LUA, 2, prefix + "dead", prefix + "queue",
                            limit, prefix)
    return moved, expired
