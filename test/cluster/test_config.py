"""docs/kubernetes.md section 8, "Changing the configuration", done by the
ops role on the real cluster: edit the ConfigMap surge-config, restart the
workers, and read the new value back from the running workers: each logs
its concurrency when it starts (read with the dev role, which may read
logs), and the workers beating in Redis are exactly the restarted pods.
The value is then put back the same way."""
import re
import time

from clusterlib import DEV, NS, OPS, WORKER_SEL, is_ready, kc, kc_json, live, log, name, pods, rollout, wait_until

KEY = "SURGE_WORKER_READ_CONCURRENCY"   # read jobs at once per worker: no effect on the HPA
BEFORE, AFTER = 2, 3


def set_and_restart(value, as_):
    kc("patch", "configmap", "surge-config", "-n", NS, "--type", "merge", "-p", f'{{"data":{{"{KEY}":"{value}"}}}}',
       as_=as_)
    kc("rollout", "restart", "deployment/surge-worker", "-n", NS, as_=as_)
    rollout(NS, "deployment/surge-worker", as_=as_)


def started_with(p):
    """The read concurrency a worker pod said it started with, from its log."""
    out = kc("logs", name(p), "-n", NS, as_=DEV).stdout
    m = re.search(r"surge-worker \S+: burn concurrency \d+, read concurrency (\d+)", out)
    return int(m.group(1)) if m else None


def workers_run_with(value, redis, since):
    """Every live worker pod was made after `since` (the restart), is
    ready, logged concurrency `value`, and beats in Redis; no other worker beats."""
    ws = live(pods(NS, WORKER_SEL))
    if not ws or not all(is_ready(p) and p["metadata"]["creationTimestamp"] >= since for p in ws):
        return False
    said = {name(p): started_with(p) for p in ws}
    if any(v != value for v in said.values()):
        return False
    beating = {w.rsplit("-", 1)[0] for w in redis.snapshot()["workers"]}
    return said if beating == set(said) else False


def test_configmap_change_reaches_the_workers(at_rest):
    redis = at_rest
    before = kc_json("get", "configmap", "surge-config", "-n", NS, as_=OPS)["data"][KEY]
    assert before == str(BEFORE), f"{KEY} is {before!r} in the ConfigMap; the overlay sets {BEFORE}"
    since = utc_now()
    try:
        log(f"ops: {KEY}={AFTER} in the ConfigMap surge-config, then rollout restart deployment/surge-worker")
        set_and_restart(str(AFTER), OPS)
        said = wait_until(f"the workers to run with read concurrency {AFTER}",
                          lambda: workers_run_with(AFTER, redis, since), 180)
        log(f"the running workers say: {said}")
    finally:
        since = utc_now()
        log(f"ops: {KEY}={before} again, and restart")
        set_and_restart(before, OPS)
    said = wait_until(f"the workers to run with read concurrency {BEFORE} again",
                      lambda: workers_run_with(BEFORE, redis, since), 180)
    log(f"the running workers say: {said}")


def utc_now():
    """Now, in the format of creationTimestamp (which compares as text).
    The API server runs on this machine: one clock."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
