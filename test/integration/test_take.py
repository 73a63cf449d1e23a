"""The take (worker/fetcher.c, docs/architecture.md "Who may write a job"): a
worker takes up to its free slots' worth of ids of a type in one script that
moves each from the queue to its list and starts it. A burst is taken in
batches, never past the type's concurrency, each job run once; a worker
killed holding a batch, or a batch whose answer is lost while Redis stalls,
loses no id and runs none twice at the same time."""

import re
import signal

from helpers import post_job
from reliability import (RedisProxy, Resp, TableLock, assert_invariants, assert_nothing_left,
                         command_calls, drain_a_burst, kill9, metric, most_at_once, poll_until,
                         processing_key, readyz, wait_all_finished, worker_name)

HEARTBEAT = 3  # the smallest SURGE_HEARTBEAT_SECONDS allowed
TAKEN = re.compile(r"jobs_taken: (\d+) read job\(s\) in one take")


def _takes(worker):
    """The number of ids in each take of read jobs, from the worker's debug log."""
    return [int(n) for n in TAKEN.findall(worker.stderr())]


def _queue_reads(resp, n, first_item):
    """n read jobs as the api leaves them, queued by one LPUSH; their ids."""
    ids = [f"7ZZZZZZZZZZZZZZZZZZZZZK{i:03d}" for i in range(n)]
    for i, jid in enumerate(ids):
        resp.call("HSET", f"surge:job:{jid}", "type", "read",
                  "params", f'{{"item_id":{first_item + i}}}', "status", "queued",
                  "attempts", "0", "created_at", "2026-01-01T00:00:00.000Z")
    resp.call("LPUSH", "surge:queue:read", *ids)
    return ids


def test_a_burst_of_reads_is_taken_in_batches(surge, redis, postgres):
    """300 reads wait in the queue when the worker starts: its first take
    fills its 4 read slots at once, later ones take what has been freed since
    the last (never more than SURGE_WORKER_READ_CONCURRENCY), each id exactly
    once. Taking and starting cost at most one round trip per job (a take,
    or a BLMOVE when the queue ran dry), where a BLMOVE and a start script
    for every job cost two. Every job succeeds at its first attempt, and no
    more than 4 ever run at once."""
    n, slots = 300, 4
    api = surge.api()
    resp = Resp(redis.port)
    w, states = drain_a_burst(surge, api, resp, n, slots)
    takes = _takes(w)
    lmoves, blmoves = command_calls(resp, "lmove"), command_calls(resp, "blmove")
    print(f"\n{n} reads: {len(takes)} takes (ids per take: max {max(takes)}, "
          f"{sum(t > 1 for t in takes)} takes of more than one), {lmoves} LMOVE, "
          f"{blmoves} BLMOVE")
    assert sum(takes) == n, f"the takes hold {sum(takes)} ids for {n} jobs: {takes}"
    assert takes[0] == slots and max(takes) == slots, takes
    assert len(takes) + blmoves <= n, f"{len(takes)} takes and {blmoves} BLMOVEs for {n} jobs"
    assert blmoves < n // 10, f"{blmoves} BLMOVEs for {n} jobs taken off a full queue"
    name = worker_name(w)
    for i, h in states.items():
        assert h["attempts"] == "1" and h["worker"] == name and h["lease"] == "1", (i, h)
    assert most_at_once(list(states.values())) <= slots
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action="take") == 0
    assert_nothing_left(resp)
    assert_invariants(resp)


def test_a_worker_killed_holding_a_batch_loses_none(surge, redis, postgres):
    """A worker takes 4 reads in one take; they wait on a table lock, and it
    is killed with SIGKILL. Once its heartbeat expires another worker puts
    the 4 back and runs them: every job of the burst succeeds, each is
    finished once (by the second worker), the 4 at their second attempt."""
    n, slots = 8, 4
    api = surge.api()
    resp = Resp(redis.port)
    w1 = surge.worker(SURGE_WORKER_READ_CONCURRENCY=slots, SURGE_HEARTBEAT_SECONDS=HEARTBEAT,
                      SURGE_LOG_LEVEL="debug")
    # Its statements are prepared before the lock is taken (a PREPARE would wait on it).
    poll_until(lambda: readyz(w1)[0] == 200, 15, what="w1 ready")
    name1 = worker_name(w1)
    with TableLock(postgres) as lock:
        # All queued at once: the BLMOVE of the idle worker brings one, the
        # take that starts it takes 3 more.
        ids = _queue_reads(resp, n, 40)
        lock.wait_for_reads(slots)
        assert _takes(w1) == [slots], f"not one take of {slots}: {_takes(w1)}"
        held = resp.call("LRANGE", processing_key(name1), 0, -1)
        assert len(held) == slots, held
        kill9(w1)
    w2 = surge.worker(SURGE_WORKER_READ_CONCURRENCY=slots, SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    states = wait_all_finished(resp, ids, timeout=60)
    poll_until(lambda: metric(w2.admin_port, "surge_jobs_finished_total", type="read",
                              outcome="succeeded") == n, 30,
               what="the second worker to be told every outcome is written")
    name2 = worker_name(w2)
    for i, h in states.items():
        assert h["worker"] == name2, (i, h)
        assert h["attempts"] == ("2" if i in held else "1"), (i, h)
    assert resp.call("EXISTS", processing_key(name1)) == 0
    assert metric(w2.admin_port, "surge_jobs_recovered_total") == slots
    assert_nothing_left(resp)
    assert_invariants(resp)


def test_a_take_whose_answer_is_lost_while_redis_stalls(surge, redis, postgres):
    """The worker's take reaches Redis just as Redis stalls (SIGSTOP) past
    the worker's deadline: the worker drops the connection, and Redis, once
    it goes on, runs the take whose answer nobody reads. The ids it moved sit
    in the worker's list, running under its name; the orphan check puts them
    back (their takes revoked) and they run again. Nothing is lost, nothing
    is finished twice, no outcome is stale."""
    n = 8
    api = surge.api()
    resp = Resp(redis.port)
    proxy = RedisProxy(redis.port)
    w = surge.worker(SURGE_REDIS_URL=proxy.url, SURGE_WORKER_READ_CONCURRENCY=4,
                     SURGE_REDIS_TIMEOUT_MS=3000, SURGE_LOG_LEVEL="debug")
    try:
        # Idle: the read queue found empty, its fetcher waits on a BLMOVE
        # (1 s), sent so recently that it will not end while the proxy holds.
        poll_until(lambda: readyz(w)[0] == 200
                   and (proxy.waiting_since(b"surge:queue:read") or 1) < 0.3, 15,
                   what="the worker ready and waiting on BLMOVE for a read")
        proxy.set_mode("hold")
        # The BLMOVE answers the first id; the take that starts it (with
        # up to 3 more) is held by the proxy, the jobs behind it are queued.
        ids = [post_job(api.http_port, "/jobs/read", {"item_id": 60 + i}) for i in range(n)]
        poll_until(lambda: proxy.held_script(b"LMOVE") >= 1, 15, what="the take to be sent")
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            proxy.set_mode("pass")
            poll_until(lambda: "fetch_failed: read queue: take:" in w.stderr(), 30,
                       what="the worker to give up waiting for the take's answer")
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        states = wait_all_finished(resp, ids, timeout=90)
        poll_until(lambda: metric(w.admin_port, "surge_jobs_finished_total", type="read",
                                  outcome="succeeded") == n, 30,
                   what="the worker to be told every outcome is written")
    finally:
        proxy.close()
    log = w.stderr()
    orphans = set(re.findall(r"orphan_requeued: job (\S+) sat in our list", log))
    twice = {i for i, h in states.items() if h["attempts"] != "1"}
    print(f"\nlost take: {len(orphans)} id(s) put back by the orphan check, "
          f"takes seen {_takes(w)}")
    # The lost take ran in Redis: its ids were started (attempt counted),
    # then put back by the orphan check, and ran once more.
    assert orphans, "the lost take's ids were never found in the worker's list"
    assert twice == orphans, (twice, orphans)
    for i, h in states.items():
        assert h["attempts"] in ("1", "2") and h["status"] == "succeeded", (i, h)
        # First take, put back (revoked), taken again: lease 3.
        assert h["lease"] == ("3" if i in orphans else "1"), (i, h)
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action="succeed") == 0
    assert_nothing_left(resp)
    assert_invariants(resp)
