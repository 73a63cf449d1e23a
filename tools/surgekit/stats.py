"""What Redis says about surge right now, and the dead-list requeue."""
import json

from .resp import RedisError

# Moves ids from the dead list to the back of the queue (oldest dead first),
# resetting each job for a fresh set of attempts, in one atomic step per call.
# KEYS[1] dead list, KEYS[2] queue; ARGV[1] how many at most (0: all),
# ARGV[2] the key prefix. A dead id whose hash has expired (a finished job's
# hash lives SURGE_RESULT_TTL_SECONDS) cannot run again: it is put back on the
# dead list where it was and counted. Returns {moved, expired}.
REQUEUE_DEAD_LUA = """
local limit = tonumber(ARGV[1])
local moved, kept = 0, {}
while limit == 0 or moved < limit do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not id then break end
  local job = ARGV[2] .. 'job:' .. id
  if redis.call('HEXISTS', job, 'type') == 1 then
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


def snapshot(r, prefix="surge:"):
    """Sizes of surge's keys and the live workers (heartbeat keys)."""
    hb_keys = r.scan_keys(prefix + "worker:*")
    proc_keys = r.scan_keys(prefix + "processing:*")
    cmds = [("LLEN", prefix + "queue"), ("ZCARD", prefix + "retry"), ("LLEN", prefix + "dead")]
    cmds += [("GET", k) for k in hb_keys] + [("LLEN", k) for k in proc_keys]
    replies = r.pipeline(cmds)
    for x in replies:
        if isinstance(x, RedisError):
            raise x
    queue, retry, dead = replies[:3]
    beats = replies[3:3 + len(hb_keys)]
    lens = replies[3 + len(hb_keys):]
    workers = {}
    for k, v in zip(hb_keys, beats):
        if v is None:  # expired between SCAN and GET
            continue
        workers[k[len(prefix + "worker:"):]] = heartbeat_info(v)
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
    for k in r.scan_keys(prefix + "processing:*"):
        if r.call("LPOS", k, job_id) is not None:
            worker = k[len(prefix + "processing:"):]
            alive = r.call("EXISTS", prefix + "worker:" + worker) == 1
            places.append(f"{k} (worker {worker} is {'alive' if alive else 'NOT beating: its list will be recovered'})")
    return places


def requeue_dead(r, prefix="surge:", limit=0):
    moved, expired = r.call("EVAL", REQUEUE_DEAD_LUA, 2, prefix + "dead", prefix + "queue",
                            limit, prefix)
    return moved, expired
