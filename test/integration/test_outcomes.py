"""Outcomes written together (worker/runner.c, docs/architecture.md "Who may
write a job"): the outcomes of the jobs that finish in one loop turn go to
Redis in one script, each still fenced by its own lease. A burst of reads
writes its outcomes in fewer scripts than jobs, each job finished once; a
batch whose answer is lost while Redis stalls is sent again whole and each
of its entries finds its own write; a worker killed with a batch in flight
loses no job and none runs more than once more."""

import json
import re
import signal

import pytest

from helpers import post_job
from reliability import (RedisProxy, Resp, TableLock, assert_invariants, assert_nothing_left,
                         drain_a_burst, kill9, metric, most_at_once, poll_until, readyz,
                         wait_all_finished, worker_name)

HEARTBEAT = 3  # the smallest SURGE_HEARTBEAT_SECONDS allowed
SENT = re.compile(r"outcomes_sent: (\d+) outcome\(s\) in one script")


def _batches(worker):
    """The number of outcomes in each outcome script sent, from the debug log."""
    return [int(n) for n in SENT.findall(worker.stderr())]


def _finished(worker, job):
    return len(re.findall(rf"job_finished: job {job} ", worker.stderr()))


def _reads_waiting(api, postgres, w, n, first_item):
    """A table lock held and n reads of w waiting on it; (lock, ids)."""
    lock = TableLock(postgres).__enter__()
    ids = [post_job(api.http_port, "/jobs/read", {"item_id": first_item + i}) for i in range(n)]
    lock.wait_for_reads(n)
    return lock, ids


def test_a_burst_of_reads_writes_its_outcomes_in_fewer_scripts(surge, redis, postgres):
    """300 reads wait in the queue when the worker starts: the outcomes of
    the reads that answer in the same loop turn leave in one script, so
    there are fewer outcome scripts than jobs, each job is finished exactly
    once, at its first attempt, and every outcome is in exactly one script
    (none was sent again on a calm run)."""
    n, slots = 300, 4
    api = surge.api()
    resp = Resp(redis.port)
    w, states = drain_a_burst(surge, api, resp, n, slots)
    batches = _batches(w)
    print(f"\n{n} reads: {len(batches)} outcome scripts (outcomes per script: max "
          f"{max(batches)}, {sum(b > 1 for b in batches)} scripts of more than one)")
    assert sum(batches) == n, f"the outcome scripts hold {sum(batches)} outcomes for {n} jobs"
    assert len(batches) < n, f"{len(batches)} outcome scripts for {n} jobs"
    assert max(batches) <= slots, batches
    for i, h in states.items():
        assert h["attempts"] == "1" and h["status"] == "succeeded", (i, h)
        assert _finished(w, i) == 1, f"job {i} finished {_finished(w, i)} times"
    assert "outcome_already_written" not in w.stderr()
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action="succeed") == 0
    assert_nothing_left(resp)
    assert_invariants(resp)


@pytest.mark.parametrize("outcome", ["dead", "succeeded"])
def test_a_batch_of_outcomes_whose_answer_is_lost_is_sent_again_whole(surge, redis, postgres,
                                                                       outcome):
    """4 reads wait on a table lock; the worker is paused (SIGSTOP) while
    their reads end (killed: they die, one attempt allowed; or the lock
    released: they succeed), so it reads the 4 answers in one loop turn and
    sends their outcomes in one script, to a Redis stalled (SIGSTOP) past the
    worker's deadline. The worker drops the connection and sends the batch
    again whole; Redis, going on, runs the first copy, so each entry of the
    second finds its own write (outcome_already_written). Each job is
    finished once, the dead list holds each id once, nothing is stale."""
    n = 4
    api = surge.api()
    resp = Resp(redis.port)
    w = surge.worker(SURGE_WORKER_READ_CONCURRENCY=n, SURGE_MAX_ATTEMPTS=1,
                     SURGE_REDIS_TIMEOUT_MS=2000, SURGE_LOG_LEVEL="debug")
    poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
    lock, ids = _reads_waiting(api, postgres, w, n, 30)
    try:
        w.signal(signal.SIGSTOP)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            if outcome == "dead":
                assert lock.kill_waiting_reads() == n
            else:
                lock.release()
            poll_until(lambda: lock.reads_waiting() == 0, 15, what="the reads to end")
            w.signal(signal.SIGCONT)
            for i in ids:
                poll_until(lambda: f"outcome_not_written: job {i}: timeout" in w.stderr(), 20,
                           what=f"the worker to give up waiting for job {i}'s outcome")
        finally:
            w.signal(signal.SIGCONT)
            redis.proc.send_signal(signal.SIGCONT)
        states = wait_all_finished(resp, ids, timeout=30, statuses=(outcome,))
        poll_until(lambda: all(_finished(w, i) == 1 for i in ids), 20,
                   what="the worker to get an answer to every outcome")
    finally:
        lock.release()
    batches = _batches(w)
    print(f"\nlost batch: outcome scripts sent {batches}")
    assert batches.count(n) >= 2, f"the batch of {n} was not sent again whole: {batches}"
    log = w.stderr()
    for i, h in states.items():
        assert h["status"] == outcome and h["attempts"] == "1", (i, h)
        assert f"outcome_already_written: job {i}: its outcome ({outcome})" in log, log[-3000:]
        assert _finished(w, i) == 1, f"job {i} finished {_finished(w, i)} times"
    dead = resp.call("LRANGE", "surge:dead", 0, -1)
    if outcome == "dead":
        assert sorted(dead) == sorted(ids), f"the dead list holds {dead}"
        for i, h in states.items():
            assert json.loads(h["error"])["code"] == "database_unavailable", h
    else:
        assert dead == [], dead
        assert_nothing_left(resp)
    assert metric(w.admin_port, "surge_jobs_finished_total", type="read", outcome=outcome) == n
    for action in ("succeed", "fail"):
        assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action=action) == 0
    assert_invariants(resp)


def test_a_worker_killed_with_outcomes_in_flight_loses_none(surge, redis, postgres):
    """4 reads of w1 wait on a table lock; Redis stalls (SIGSTOP), the lock
    is released, and w1 sends the 4 outcomes to the stalled Redis, then is
    killed (SIGKILL). Redis goes on: whatever of w1's script it runs is
    written, and w2, once w1's heartbeat has expired, puts back what is left
    in w1's list and runs it. Every job succeeds, none runs more than once
    more, and nothing is left in any list."""
    n = 4
    api = surge.api()
    resp = Resp(redis.port)
    w1 = surge.worker(SURGE_WORKER_READ_CONCURRENCY=n, SURGE_HEARTBEAT_SECONDS=HEARTBEAT,
                      SURGE_LOG_LEVEL="debug")
    poll_until(lambda: readyz(w1)[0] == 200, 15, what="w1 ready")
    name1 = worker_name(w1)
    lock, ids = _reads_waiting(api, postgres, w1, n, 50)
    try:
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            lock.release()
            poll_until(lambda: sum(_batches(w1)) >= n, 15,
                       what="w1 to send the outcomes of its reads")
            kill9(w1)
        finally:
            redis.proc.send_signal(signal.SIGCONT)
    finally:
        lock.release()
    w2 = surge.worker(SURGE_WORKER_READ_CONCURRENCY=n, SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    states = wait_all_finished(resp, ids, timeout=60)
    poll_until(lambda: resp.call("ZSCORE", "surge:workers", name1) is None, 30,
               what="w2 to find w1 dead")
    name2 = worker_name(w2)
    again = {i for i, h in states.items() if h["attempts"] != "1"}
    print(f"\nkilled with outcomes in flight: {len(again)} job(s) run again by w2")
    for i, h in states.items():
        assert h["status"] == "succeeded", (i, h)
        assert h["attempts"] == ("2" if i in again else "1"), (i, h)
        assert h["worker"] == (name2 if i in again else name1), (i, h)
    assert metric(w2.admin_port, "surge_jobs_finished_total", type="read",
                  outcome="succeeded") == len(again)
    assert metric(w2.admin_port, "surge_jobs_recovered_total") == len(again)
    assert_nothing_left(resp)
    assert_invariants(resp)


def test_a_slot_is_free_once_its_read_has_answered(surge, redis, postgres):
    """2 reads wait on a table lock (2 slots), 4 more are queued. Redis's
    input is held by a proxy as the lock is released: the outcomes of the 2
    reads and the take for their slots are both sent to Redis before it has
    answered anything, so a PostgreSQL connection waits for one round trip
    to Redis between two reads, not two. No more than 2 reads ever run at
    once, each job finishes once, at its first attempt."""
    n, slots = 6, 2
    api = surge.api()
    resp = Resp(redis.port)
    proxy = RedisProxy(redis.port)
    w = surge.worker(SURGE_REDIS_URL=proxy.url, SURGE_WORKER_READ_CONCURRENCY=slots,
                     SURGE_LOG_LEVEL="debug")
    try:
        poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
        with TableLock(postgres) as lock:
            ids = [post_job(api.http_port, "/jobs/read", {"item_id": 70 + i}) for i in range(n)]
            lock.wait_for_reads(slots)
            proxy.set_mode("hold")
            try:
                lock.release()
                poll_until(lambda: proxy.held_script(b"kinds = {succeed") >= 1
                           and proxy.held_script(b"local function start(id)") >= 1, 15,
                           what="the outcomes and the next take sent before any answer")
            finally:
                proxy.set_mode("pass")
        states = wait_all_finished(resp, ids, timeout=60)
        poll_until(lambda: all(_finished(w, i) == 1 for i in ids), 20,
                   what="the worker to get an answer to every outcome")
    finally:
        proxy.close()
    for i, h in states.items():
        assert h["attempts"] == "1" and h["status"] == "succeeded", (i, h)
    assert most_at_once(list(states.values())) <= slots
    assert_nothing_left(resp)
    assert_invariants(resp)
