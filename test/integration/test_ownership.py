"""One owner per job (docs/architecture.md, "Who may write a job"): every
take of a job gets a fencing token, the hash's `lease`; an outcome, a requeue
or a recovery acting for a take that is no longer current changes nothing,
and is counted (surge_stale_outcomes_total) and logged. An outcome sent again
after a lost answer finds nothing to do. The dead list and the retry set never
hold an id twice, and the dead list is bounded."""

import json
import signal
import time

import pytest

from helpers import get_job, poll_job, post_job
from reliability import (RedisProxy, Resp, TableLock, assert_invariants, metric, now_ms,
                         poll_until, processing_key, readyz, wait_started, worker_name)

HEARTBEAT = 3  # the smallest SURGE_HEARTBEAT_SECONDS allowed


def _hash(resp, job):
    return resp.hgetall(f"surge:job:{job}")


@pytest.mark.parametrize("redis_restarts", [False, True], ids=["sigstop", "redis-restart"])
def test_a_worker_taken_for_dead_writes_nothing(surge, redis, postgres, redis_restarts):
    """w1 takes a read, which waits on a table lock, and is paused (SIGSTOP)
    past its heartbeat; with "redis-restart" Redis is also stopped until that
    heartbeat has expired and started again from its append-only file. w2
    takes the job back from w1's list and runs it (its read waits on the lock
    too). w1 resumes, its read times out: its retry must change nothing while
    w2 holds the job, and the job's final record is w2's."""
    api = surge.api()
    w1 = surge.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT, SURGE_WORKER_READ_CONCURRENCY=1,
                      SURGE_JOB_TIMEOUT_SECONDS=4)
    # Its statements are prepared before the lock is taken (a PREPARE would wait on it).
    poll_until(lambda: readyz(w1)[0] == 200, 15, what="w1 ready")
    # w2 prepares its statements now (a PREPARE would wait on the lock) but
    # reaches Redis only once w1 is paused, so w1 is the one that takes the job.
    proxy = RedisProxy(redis.port, mode="refuse")
    w2 = surge.worker(SURGE_REDIS_URL=proxy.url, SURGE_HEARTBEAT_SECONDS=HEARTBEAT,
                      SURGE_WORKER_READ_CONCURRENCY=1, SURGE_JOB_TIMEOUT_SECONDS=120)
    poll_until(lambda: readyz(w2)[1]["checks"]["postgres"]["status"] == "ok", 15,
               what="w2 connected to PostgreSQL")
    resp = Resp(redis.port)
    name1, name2 = worker_name(w1), worker_name(w2)
    try:
        with TableLock(postgres) as lock:
            job = post_job(api.http_port, "/jobs/read", {"item_id": 21})
            first = poll_until(lambda: (lambda h: h if h.get("status") == "running" else None)(
                _hash(resp, job)), 15, what="w1 running the read")
            assert first["worker"] == name1, first
            # Paused once its read waits on the lock, not only once the job
            # is marked running: paused before it reads the take's answer,
            # w1 would never start the read, and have no outcome to write.
            lock.wait_for_reads(1)
            w1.signal(signal.SIGSTOP)
            try:
                if redis_restarts:
                    expires = now_ms() + resp.call("PTTL", f"surge:worker:{name1}")
                    redis.stop()
                    poll_until(lambda: now_ms() > expires + 200, HEARTBEAT + 10,
                               what="w1's heartbeat to expire while Redis is down")
                    redis.start()
                    resp = Resp(redis.port)
                    assert _hash(resp, job).get("lease") == first.get("lease"), \
                        "the lease was not kept"
                proxy.set_mode("pass")
                second = poll_until(
                    lambda: (lambda h: h if h.get("worker") == name2 and h.get("status") == "running"
                             else None)(_hash(resp, job)),
                    HEARTBEAT + 30, what="w2 to take the job back from w1's list and run it")
            finally:
                w1.signal(signal.SIGCONT)
            assert resp.call("LLEN", processing_key(name1)) == 0
            # w1's read times out and it sends a retry for a take that is no longer current.
            poll_until(lambda: f"stale_outcome: job {job}" in w1.stderr()
                       or f"job_finished: job {job}" in w1.stderr(),
                       30, what="w1 to write its outcome")
            now = _hash(resp, job)
            assert now == second, f"a stale outcome changed the job w2 holds:\n{second}\n{now}"
            assert resp.call("ZSCORE", "surge:retry", job) is None, "a stale retry was scheduled"
            assert resp.call("LRANGE", "surge:queue:read", 0, -1) == []
            assert resp.call("LRANGE", processing_key(name2), 0, -1) == [job]
            # Put back (the lease moved on once) and taken again (once more).
            assert int(second["lease"]) == int(first["lease"]) + 2, (first, second)
            assert metric(w1.admin_port, "surge_stale_outcomes_total", type="read",
                          action="fail") == 1
            log = w1.stderr()
            assert "stale_outcome" in log and f"job {job} (read)" in log, log[-3000:]
            assert "worker_taken_for_dead" in log, log[-3000:]
            lock.release()
            done = poll_job(api.http_port, job, timeout=30)
            # w2 has its answer (its Redis goes through the proxy).
            poll_until(lambda: f"job_finished: job {job}" in w2.stderr(), 30,
                       what="w2 to be told its outcome is written")
    finally:
        proxy.close()
    assert done["status"] == "succeeded" and done["worker"] == name2, done
    assert done["attempts"] == 2 and done["error"] is None, done
    assert done["result"] == postgres.item_json(21), done
    assert metric(w2.admin_port, "surge_jobs_finished_total", type="read",
                  outcome="succeeded") == 1
    for w in (w1, w2):
        assert metric(w.admin_port, "surge_jobs_finished_total", type="read", outcome="retry") == 0
    assert_invariants(resp)
    assert resp.call("LRANGE", "surge:dead", 0, -1) == []
    print(f"\nstale owner ({'Redis restarted' if redis_restarts else 'paused'}): lease "
          f"{first['lease']} -> {second['lease']}, w1's retry changed nothing")


def test_an_outcome_sent_again_finds_nothing_to_do(surge, redis, postgres):
    """Redis stalls (SIGSTOP) while a worker writes the outcome of a job that
    dies: the worker's deadline passes, it drops the connection and sends the
    outcome again; Redis has run the first copy meanwhile. The copy finds it
    written and does nothing: the id is on the dead list once."""
    api = surge.api()
    # One attempt: the read dies when its PostgreSQL connection is killed.
    w = surge.worker(SURGE_MAX_ATTEMPTS=1, SURGE_REDIS_TIMEOUT_MS=2000)
    poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
    resp = Resp(redis.port)
    with TableLock(postgres) as lock:
        job = post_job(api.http_port, "/jobs/read", {"item_id": 22})
        lock.wait_for_reads(1)
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            # The read fails at once; its outcome goes to the frozen Redis.
            assert lock.kill_waiting_reads() == 1
            poll_until(lambda: f"outcome_not_written: job {job}: timeout" in w.stderr(), 20,
                       what="the worker to give up waiting for the outcome's answer")
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        poll_until(lambda: f"job_finished: job {job}" in w.stderr(), 20,
                   what="the worker to get an answer to its outcome")
    h = _hash(resp, job)
    assert h["status"] == "dead", h
    assert json.loads(h["error"])["code"] == "database_unavailable", h
    assert resp.call("LRANGE", "surge:dead", 0, -1) == [job], "the id is on the dead list twice"
    assert f"outcome_already_written: job {job}" in w.stderr(), w.stderr()[-3000:]
    assert metric(w.admin_port, "surge_jobs_finished_total", type="read", outcome="dead") == 1
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action="fail") == 0
    assert_invariants(resp)


def test_a_take_of_a_job_held_elsewhere_changes_nothing(surge, redis):
    """An id queued while its job runs under another take (a copy left by
    some earlier fault): the worker that takes it runs nothing and changes
    nothing, counts and logs it, and its list's entry is dropped by the orphan
    check instead of going back to the queue."""
    resp = Resp(redis.port)
    job = "7ZZZZZZZZZZZZZZZZZZZZZZZH0"
    held = {"type": "read", "params": '{"item_id":3}', "status": "running", "attempts": "1",
            "lease": "7", "worker": "elsewhere-1", "created_at": "2026-01-01T00:00:00.000Z",
            "started_at": "2026-01-01T00:00:01.000Z"}
    resp.call("HSET", f"surge:job:{job}", *[x for kv in held.items() for x in kv])
    resp.call("RPUSH", "surge:processing:elsewhere-1", job)
    resp.call("LPUSH", "surge:queue:read", job)
    w = surge.worker()
    poll_until(lambda: resp.call("LLEN", "surge:queue:read") == 0
               and resp.call("LLEN", processing_key(worker_name(w))) == 0, 30,
               what="the copy to be taken and its entry dropped")
    assert _hash(resp, job) == held, "a take of a job held elsewhere changed it"
    assert resp.call("LRANGE", "surge:processing:elsewhere-1", 0, -1) == [job]
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read", action="take") == 1
    assert metric(w.admin_port, "surge_stale_outcomes_total", type="read",
                  action="recover") == 1
    assert f"stale_outcome: job {job}" in w.stderr()


# --------------------------------------------------------------------------
# the dead list


def _poison(n, tag):
    """n ids with no job hash (each dies as unreadable at its first take)."""
    return [f"7ZZZZZZZZZZZZZZZZZZZZZ{tag}{i:03d}" for i in range(n)]


def test_the_dead_list_holds_an_id_once_and_is_bounded(surge, redis):
    """SURGE_DEAD_LIST_MAX=3: five jobs die, the three latest stay. An id
    queued twice that dies twice is on the list once."""
    resp = Resp(redis.port)
    w = surge.worker(SURGE_DEAD_LIST_MAX=3)
    twice = _poison(1, "T")[0]
    resp.call("LPUSH", "surge:queue:read", twice, twice)
    poll_until(lambda: resp.call("LLEN", "surge:queue:read") == 0
               and resp.call("LLEN", processing_key(worker_name(w))) == 0, 15,
               what="the id queued twice to be taken twice")
    assert resp.call("LRANGE", "surge:dead", 0, -1) == [twice]
    ids = _poison(5, "B")
    for i in ids:
        resp.call("LPUSH", "surge:queue:read", i)
        poll_until(lambda: resp.call("HGET", f"surge:job:{i}", "status") == "dead", 15,
                   what=f"{i} to die")
    assert resp.call("LRANGE", "surge:dead", 0, -1) == list(reversed(ids[-3:])), \
        "the dead list is not the three latest deaths"
    assert_invariants(resp)


def test_the_dead_list_forgets_ids_whose_job_expired(surge, redis):
    """Ids at the old end of the dead list whose job hash has expired leave
    it; a dead job whose hash is still there stays."""
    resp = Resp(redis.port)
    api = surge.api()
    kept = post_job(api.http_port, "/jobs/read", {"item_id": 1})
    resp.call("HSET", f"surge:job:{kept}", "status", "dead")
    resp.call("LREM", "surge:queue:read", 0, kept)
    expired = _poison(3, "E")
    # Oldest at the right end: the expired ids, then a live one.
    resp.call("RPUSH", "surge:dead", kept, *expired)
    surge.worker()
    poll_until(lambda: resp.call("LRANGE", "surge:dead", 0, -1) == [kept], 40,
               what="the expired ids to leave the dead list")
    assert get_job(api.http_port, kept)["status"] == "dead"


def test_live_workers_are_not_taken_for_dead_when_redis_comes_back(surge, redis):
    """Both workers lose Redis for longer than the heartbeat TTL (each through
    its own proxy, refusing), so every heartbeat in Redis expires while w1
    burns. w2 gets Redis back first, w1 a few seconds later (less than a TTL).
    w2 must not take w1's burn for dead: a worker reads the registry only
    once its connection has been up for one TTL, and by then w1 has beaten
    again. Without that wait w2 recovered the burn and it ran twice."""
    ttl = 10
    api = surge.api()
    p1, p2 = RedisProxy(redis.port), RedisProxy(redis.port)
    resp = Resp(redis.port)
    # w1 alone takes the burn; w2 starts once it runs.
    w1 = surge.worker(SURGE_REDIS_URL=p1.url, SURGE_HEARTBEAT_SECONDS=ttl, SURGE_WORKER_BURN_CONCURRENCY=1)
    name1 = worker_name(w1)
    try:
        poll_until(lambda: readyz(w1)[0] == 200, 15, what="w1 ready")
        job = post_job(api.http_port, "/jobs/burn", {"seconds": 25})
        first = poll_until(lambda: (lambda h: h if h.get("status") == "running" else None)(_hash(resp, job)),
                           15, what="w1 running the burn")
        assert first["worker"] == name1, first
        wait_started(w1, 1, "burn")
        w2 = surge.worker(SURGE_REDIS_URL=p2.url, SURGE_HEARTBEAT_SECONDS=ttl, SURGE_WORKER_BURN_CONCURRENCY=1)
        poll_until(lambda: readyz(w2)[0] == 200, 15, what="w2 ready")
        expires = now_ms() + resp.call("PTTL", f"surge:worker:{name1}")
        ups = w2.stderr().count("redis: connected to")
        p1.set_mode("refuse")
        p2.set_mode("refuse")
        poll_until(lambda: now_ms() > expires + 500 and resp.call("EXISTS", f"surge:worker:{name1}") == 0,
                   ttl + 15, what="w1's heartbeat to expire while both workers are cut off")
        p2.set_mode("pass")
        poll_until(lambda: w2.stderr().count("redis: connected to") > ups, 20, what="w2 back on Redis")
        # w1 stays cut off long enough for w2 to read the registry (every 3 s)
        # had it no wait; a fixed time on purpose: what is shown is that w2
        # does nothing meanwhile, and there is no event for nothing.
        time.sleep(4)
        p1.set_mode("pass")
        done = poll_job(api.http_port, job, timeout=90)
    finally:
        p1.close()
        p2.close()
    assert done["status"] == "succeeded" and done["attempts"] == 1 and done["worker"] == name1, done
    assert "jobs_recovered" not in w2.stderr(), w2.stderr()[-3000:]
    assert metric(w2.admin_port, "surge_jobs_recovered_total") == 0
    assert_invariants(resp)
