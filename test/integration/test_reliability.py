"""Nothing lost: workers killed at random under load, busy workers that keep
their jobs, recovery logged and counted, retries with backoff, poison jobs,
and graceful shutdown of both binaries (docs/architecture.md, "Job outcomes").

Figures of the kill test (jobs run, lost, run twice, recovery times) are
printed: run pytest with -s to see them."""

import json
import random
import re
import signal
import threading
import time

import pytest

from helpers import Client, ConnectionClosed, build_request, get_job, http, poll_job, post_job
from reliability import (PostgresDown, RedisProxy, Resp, Submitter, TableLock, assert_invariants,
                         assert_nothing_left, busiest_thread_cpu_seconds, down_with,
                         heartbeat_key, iso_ms, kill9, metric, now_ms, poll_until,
                         processing_key, readyz, registry_score, sigterm_and_time,
                         wait_all_finished, wait_beats, wait_started, worker_name)

HEARTBEAT = 3  # the smallest SURGE_HEARTBEAT_SECONDS allowed


# --------------------------------------------------------------------------
# crash recovery


def test_kill9_workers_at_random_under_load(surge, redis):
    """2 000 jobs (reads, and a 1 s burn every 100th: half the machine's two
    cores) posted at 100 a second while a worker holding jobs is killed with
    SIGKILL every 3 s or so and a new one started: every accepted job
    succeeds, no id is left anywhere, the jobs of each killed worker come back
    within heartbeat + scan time, and no other job runs twice but a burn
    starved of CPU on a busy machine (retried by rule, never recovered)."""
    rng = random.Random(20261125)
    api = surge.api()
    wenv = {"SURGE_HEARTBEAT_SECONDS": HEARTBEAT, "SURGE_WORKER_READ_CONCURRENCY": 4}
    live = [surge.worker(**wenv) for _ in range(4)]
    resp = Resp(redis.port)
    t_start = time.monotonic()
    sub = Submitter(api.http_port, total=2000, rate=100, threads=4, burn_every=100,
                    burn_seconds=1, seed=7).start()

    kills = []  # dicts: name, held, t_kill, t_empty, t_done
    next_kill = time.monotonic() + 2.0
    while True:
        now = time.monotonic()
        submitting = any(t.is_alive() for t in sub.threads)
        if submitting and now >= next_kill and len(kills) < 8:
            # The live worker holding the most jobs (ties broken at random).
            lens = resp.pipeline([("LLEN", processing_key(worker_name(w))) for w in live])
            best = max(lens)
            victim = rng.choice([w for w, n in zip(live, lens) if n == best])
            name = worker_name(victim)
            kill9(victim)
            t_kill = time.monotonic()
            held = resp.call("LRANGE", processing_key(name), 0, -1)
            live.remove(victim)
            live.append(surge.worker(**wenv))
            kills.append({"name": name, "held": held, "t_kill": t_kill,
                          "t_empty": None, "t_done": None})
            next_kill = time.monotonic() + rng.uniform(2.5, 3.5)
        # Recovery progress of every killed worker.
        for k in kills:
            if k["t_empty"] is None and resp.call("LLEN", processing_key(k["name"])) == 0:
                k["t_empty"] = time.monotonic()
            if k["t_done"] is None and k["held"]:
                sts = resp.pipeline([("HGET", f"surge:job:{i}", "status") for i in k["held"]])
                if all(s == "succeeded" for s in sts):
                    k["t_done"] = time.monotonic()
        if not submitting and all(k["t_empty"] and (k["t_done"] or not k["held"])
                                  for k in kills):
            break
        if now - t_start > 150:
            break
        time.sleep(0.1)
    sub.join()

    ids = sub.ids()
    assert sub.count() == 2000, f"accepted {sub.count()} of 2000; refused {sub.refused}"
    states = wait_all_finished(resp, ids, timeout=max(10, 170 - (time.monotonic() - t_start)))
    elapsed = time.monotonic() - t_start

    held_ids = {i for k in kills for i in k["held"]}
    twice = [i for i, h in states.items() if int(h["attempts"]) > 1]
    starved = {m for p in surge.procs if p.name == "surge-worker"
               for m in re.findall(r"job_failed: job (\S+) \(burn\) attempt \d+: burn_starved",
                                   p.stderr_path.read_text(errors="replace"))}
    unexpected = [i for i in twice if i not in held_ids and i not in starved]
    ran_on = {h["worker"] for h in states.values()}
    rec = [k["t_empty"] - k["t_kill"] for k in kills if k["held"] and k["t_empty"]]
    done = [k["t_done"] - k["t_kill"] for k in kills if k["held"] and k["t_done"]]
    print(f"\nkill test: {len(ids)} jobs accepted ({len(sub.ids('burn'))} burns of 1 s), "
          f"{sum(h['status'] == 'succeeded' for h in states.values())} succeeded, 0 lost; "
          f"{len(kills)} workers killed with SIGKILL, holding "
          f"{sum(len(k['held']) for k in kills)} jobs in all; "
          f"{len(twice)} jobs ran more than once (attempts > 1), {len(starved)} burns starved of "
          f"CPU and retried, {len(unexpected)} other jobs not held by a killed worker; jobs "
          f"finished on {len(ran_on)} workers; "
          f"{elapsed:.1f} s in all")
    for k in kills:
        print(f"  killed {k['name']} holding {len(k['held'])}: list empty after "
              + (f"{k['t_empty'] - k['t_kill']:.2f} s" if k["t_empty"] else "never")
              + (f", its jobs finished elsewhere after {k['t_done'] - k['t_kill']:.2f} s"
                 if k["t_done"] else ""))
    if rec:
        print(f"  recovery (kill -> list empty): min {min(rec):.2f} s, max {max(rec):.2f} s; "
              f"kill -> its jobs done elsewhere: max {max(done or [0]):.2f} s")

    assert_nothing_left(resp)
    assert_invariants(resp)
    for k in kills:
        assert k["t_empty"] is not None, \
            f"processing list of killed worker {k['name']} never emptied: {k}"
        for i in k["held"]:
            assert states[i]["worker"] != k["name"], (i, states[i])
    assert any(k["held"] for k in kills), "no kill hit a worker holding jobs"
    # Heartbeat TTL (3 s) + a scan every 3 s, plus slack for a loaded machine.
    assert max(rec) < HEARTBEAT + 3 + 6, f"recovery took {max(rec):.1f} s"
    # A job runs twice only when the worker holding it was killed: a live
    # worker's jobs are never taken from it.
    assert not unexpected, ("jobs of live workers were recovered and ran twice: "
                            f"{[(i, states[i]) for i in unexpected[:5]]}")
    assert elapsed < 180, f"the kill test took {elapsed:.1f} s"


def test_a_busy_worker_keeps_its_jobs(surge, redis):
    """Both cores burning in one worker for longer than its heartbeat TTL: its
    event loop keeps beating, and the other worker's scans leave its jobs alone."""
    api = surge.api()
    busy = surge.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT, SURGE_WORKER_BURN_CONCURRENCY=2)
    name = worker_name(busy)
    ids = [post_job(api.http_port, "/jobs/burn", {"seconds": 8}) for _ in range(2)]
    resp = Resp(redis.port)
    poll_until(lambda: sorted(resp.call("LRANGE", processing_key(name), 0, -1)) == sorted(ids)
               and all(resp.call("HGET", f"surge:job:{i}", "status") == "running" for i in ids)
               and resp.call("EXISTS", heartbeat_key(name)),
               15, what="both burns running on the busy worker, its heartbeat set")
    wait_started(busy, 2, "burn")
    other = surge.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    lowest_ttl = HEARTBEAT
    while True:
        replies = resp.pipeline([("PTTL", heartbeat_key(name)),
                                 ("LRANGE", processing_key(name), 0, -1)]
                                + [("HGET", f"surge:job:{i}", "status") for i in ids])
        ttl, held, statuses = replies[0], replies[1], replies[2:]
        if any(s != "running" for s in statuses):
            break  # a burn has ended: its id leaves the list
        assert ttl > 0, f"heartbeat of a busy worker gone (PTTL {ttl}) while it holds {held}"
        assert sorted(held) == sorted(ids), f"jobs taken from a busy worker: {held}"
        lowest_ttl = min(lowest_ttl, ttl / 1000)
        time.sleep(0.1)
    for i in ids:
        job = poll_job(api.http_port, i, timeout=90)
        assert job["status"] == "succeeded", job
        # Never taken from it; a burn starved of CPU (a busy machine) is
        # retried by rule, maybe elsewhere.
        starved = f"job {i} (burn) attempt 1: burn_starved" in busy.stderr()
        assert starved or (job["worker"] == name and job["attempts"] == 1), job
    assert metric(other.admin_port, "surge_jobs_recovered_total") == 0
    assert "jobs_recovered" not in other.stderr()
    print(f"\nbusy worker: lowest heartbeat TTL seen {lowest_ttl:.2f} s of {HEARTBEAT} s")


def test_a_worker_never_holds_a_job_without_a_heartbeat(surge, redis):
    """Recovery takes the list of a worker of the registry whose heartbeat key
    is missing, and never finds one outside the registry, so a worker must not
    hold a job before its heartbeat and its registry entry exist (at start
    too): otherwise another worker puts the job back on the queue while it
    runs, or no one ever does if it dies."""
    api = surge.api()
    ids = [post_job(api.http_port, "/jobs/burn", {"seconds": 2}) for _ in range(2)]
    w = surge.worker(wait=False, SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    name = worker_name(w)
    resp = Resp(redis.port)
    seen_holding = False
    bad = []
    t0 = time.monotonic()
    # From the worker's start until both burns are done.
    while not all(s == "succeeded" for s in
                  resp.pipeline([("HGET", f"surge:job:{i}", "status") for i in ids])):
        held, beat, score = resp.pipeline([("LLEN", processing_key(name)),
                                           ("EXISTS", heartbeat_key(name)),
                                           ("ZSCORE", "surge:workers", name)])
        if held:
            seen_holding = True
            if not beat or score is None:
                bad.append(round(time.monotonic() - t0, 3))
        assert time.monotonic() - t0 < 90, "the burns did not finish in 90 s"
        time.sleep(0.005)
    assert seen_holding, "the worker never took the queued jobs"
    assert not bad, (f"{name} held jobs with no heartbeat key {heartbeat_key(name)} or no "
                     f"registry entry for {len(bad)} samples between t={bad[0]} s and "
                     f"t={bad[-1]} s after start: any other worker's recovery would requeue "
                     "them while they run")


def test_recovery_is_logged_counted_and_counts_the_attempt(surge, redis):
    api = surge.api()
    w1 = surge.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT, SURGE_WORKER_BURN_CONCURRENCY=2)
    name1 = worker_name(w1)
    ids = [post_job(api.http_port, "/jobs/burn", {"seconds": 3}) for _ in range(2)]
    resp = Resp(redis.port)
    poll_until(lambda: all(resp.call("HGET", f"surge:job:{i}", "status") == "running"
                           for i in ids), 15, what="both burns running on w1")
    w2 = surge.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT, SURGE_WORKER_BURN_CONCURRENCY=2)
    name2 = worker_name(w2)
    kill9(w1)
    t_kill = time.monotonic()
    assert sorted(resp.call("LRANGE", processing_key(name1), 0, -1)) == sorted(ids)
    poll_until(lambda: resp.call("LLEN", processing_key(name1)) == 0, HEARTBEAT + 15,
               interval=0.05, what="the killed worker's list to be recovered")
    took = time.monotonic() - t_kill
    assert took < HEARTBEAT + 3 + 3, f"recovery took {took:.1f} s"
    for i in ids:
        job = poll_job(api.http_port, i, timeout=20)
        assert job["status"] == "succeeded", job
        assert job["worker"] == name2, job
        assert job["attempts"] == 2, f"the killed attempt is counted: {job}"
    assert metric(w2.admin_port, "surge_jobs_recovered_total") == 2
    log = w2.stderr()
    assert f"worker {name1} stopped beating; 2 job(s)" in log, log[-3000:]
    print(f"\nrecovery of a killed worker's 2 jobs: {took:.2f} s after SIGKILL")


def test_an_orphan_in_a_worker_list_goes_back_with_its_attempts_right(surge, redis):
    """An id in a live worker's own list that it does not hold (as when the
    answer to its BLMOVE was lost with a connection) goes back to the queue
    after two checks, and runs; it was never started, so no attempt may be
    taken off: after one run `attempts` is 1 and never drops below 0."""
    api = surge.api()
    w = surge.worker()
    name = worker_name(w)
    resp = Resp(redis.port)
    orphan = "7ZZZZZZZZZZZZZZZZZZZZZZZZ5"
    resp.call("HSET", f"surge:job:{orphan}", "type", "read", "params", '{"item_id":11}',
              "status", "queued", "attempts", "0", "created_at", "2026-01-01T00:00:00.000Z")
    poll_until(lambda: resp.call("EXISTS", heartbeat_key(name)), 10, what="the heartbeat")
    resp.call("LPUSH", processing_key(name), orphan)
    lowest = 0
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        status, attempts = resp.call("HMGET", f"surge:job:{orphan}", "status", "attempts")
        lowest = min(lowest, int(attempts))
        if status == "succeeded":
            break
        time.sleep(0.02)
    job = get_job(api.http_port, orphan)
    assert job["status"] == "succeeded", job
    assert "orphan_requeued" in w.stderr()
    assert lowest >= 0, f"attempts went down to {lowest} while the orphan was put back"
    assert job["attempts"] == 1, f"ran once, yet attempts is {job['attempts']}: {job}"


def test_recovery_reads_the_registry_of_workers(production):
    """Against Redis as production runs it (its ACL gives the worker no SCAN):
    a live worker is in surge:workers scored by its last heartbeat; one killed
    with SIGKILL is found there by another, which puts its job back and takes
    it out of the registry; a worker that stops cleanly leaves it itself."""
    api = production.api()
    w1 = production.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    resp = Resp.of(production.redis)
    name1 = worker_name(w1)
    score = poll_until(lambda: registry_score(resp, name1), 10, what="w1 in the registry")
    assert abs(score - now_ms()) < 5000, f"w1's score {score} is not its last beat ({now_ms()})"
    job = post_job(api.http_port, "/jobs/burn", {"seconds": 3})
    poll_until(lambda: resp.call("HGET", f"surge:job:{job}", "worker") == name1, 15,
               what="w1 running the burn")
    kill9(w1)
    w2 = production.worker(SURGE_HEARTBEAT_SECONDS=HEARTBEAT)
    name2 = worker_name(w2)
    done = poll_job(api.http_port, job, timeout=HEARTBEAT + 40)
    assert done["status"] == "succeeded" and done["worker"] == name2, done
    assert done["attempts"] == 2, done
    assert registry_score(resp, name1) is None, "the dead worker is still in the registry"
    assert registry_score(resp, name2) is not None
    log = w2.stderr()
    assert f"worker {name1} stopped beating; 1 job(s)" in log, log[-3000:]
    assert "recovery_failed" not in log and "NOPERM" not in log, log[-3000:]
    assert w2.stop() == 0
    assert registry_score(resp, name2) is None, "a worker that left is still in the registry"
    assert resp.call("EXISTS", heartbeat_key(name2)) == 0
    assert_invariants(resp)


# --------------------------------------------------------------------------
# no job taken while a dependency is away


def test_reads_wait_in_the_queue_while_postgres_is_away(surge, redis, postgres):
    """While the worker has no PostgreSQL connection it takes no job: its
    /readyz says so, the reads posted meanwhile wait in the queue with no
    attempt used, and all succeed at their first attempt once it is back."""
    api = surge.api()
    w = surge.worker(SURGE_MAX_ATTEMPTS=2)
    poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
    resp = Resp(redis.port)
    name = worker_name(w)
    with PostgresDown(postgres):
        body = poll_until(lambda: down_with(w, "postgres"), 15,
                          what="/readyz to name postgres as down")
        ids = [post_job(api.http_port, "/jobs/read", {"item_id": 30 + n}) for n in range(5)]
        # Three seconds of the worker's own loop with the reads there to take.
        wait_beats(resp, name, 3)
        assert sorted(resp.call("LRANGE", "surge:queue:read", 0, -1)) == sorted(ids), \
            "the worker took reads while PostgreSQL was away"
        for i in ids:
            h = resp.hgetall(f"surge:job:{i}")
            assert h["status"] == "queued" and h["attempts"] == "0", h
        assert "taking no read job" in body["checks"]["postgres"]["error"], body
        assert "fetch_paused: no PostgreSQL connection is open: taking no read job" in w.stderr()
    for i in ids:
        job = poll_job(api.http_port, i, timeout=60)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
    assert "fetch_resumed" in w.stderr()


def test_no_id_is_taken_while_the_main_redis_connection_is_down(surge, redis):
    """The worker's main Redis connection (job state, heartbeats) is cut while
    its fetch connection stays up: it sends no more BLMOVE, a job posted
    meanwhile stays in the queue, and runs once the connection is back."""
    api = surge.api()
    proxy = RedisProxy(redis.port)
    resp = Resp(redis.port)
    try:
        w = surge.worker(SURGE_REDIS_URL=proxy.url)
        poll_until(lambda: readyz(w)[0] == 200 and proxy.fetching(), 15,
                   what="the worker ready and fetching")
        proxy.set_mode("fetch_only")
        poll_until(lambda: down_with(w, "redis"), 15, what="/readyz to name redis as down")
        poll_until(proxy.fetch_idle, 15,
                   what="the fetch connection to go quiet (the BLMOVE sent before the cut "
                        "answered, no new one): the worker kept fetching without its main "
                        "connection")
        t_post = time.monotonic()
        job = post_job(api.http_port, "/jobs/read", {"item_id": 40})
        refused = proxy.refused
        poll_until(lambda: proxy.refused >= refused + 3, 30,
                   what="three more attempts of the worker to reconnect its main connection")
        assert resp.call("LRANGE", "surge:queue:read", 0, -1) == [job], \
            "an id was taken while the main Redis connection was down"
        assert proxy.blmoves_since(t_post) == 0
        assert "fetch_paused: the main Redis connection is down" in w.stderr()
        proxy.set_mode("pass")
        done = poll_job(api.http_port, job, timeout=30)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        # The worker has its answer (its Redis goes through the proxy).
        poll_until(lambda: f"job_finished: job {job}" in w.stderr(), 30,
                   what="the worker to be told its outcome is written")
    finally:
        proxy.close()
    assert_nothing_left(resp)


# --------------------------------------------------------------------------
# deadlines


def test_a_burn_starved_past_its_wall_clock_cap_fails_and_is_retried(surge, redis):
    """A burn of 1 s whose worker is paused past the wall-clock cap (10 x 1 s
    + 2 s) did not get its CPU time: it fails with burn_starved (one attempt
    allowed, yet it is not dead), is retried, and succeeds when it runs again;
    never `succeeded` with half the work."""
    api = surge.api()
    # No recovery while it is paused; starvation never makes a job dead.
    w = surge.worker(SURGE_HEARTBEAT_SECONDS=60, SURGE_MAX_ATTEMPTS=1)
    resp = Resp(redis.port)
    job = post_job(api.http_port, "/jobs/burn", {"seconds": 1})
    # Its thread has begun to spin (the job is `running` a little before).
    poll_until(lambda: busiest_thread_cpu_seconds(w.pid) >= 0.1, 15, what="the burn spinning")
    cap_over = now_ms() + 12000
    w.signal(signal.SIGSTOP)
    try:
        poll_until(lambda: now_ms() > cap_over + 500, 20, what="the burn's wall-clock cap to pass")
    finally:
        w.signal(signal.SIGCONT)
    done = poll_job(api.http_port, job, timeout=30)
    assert done["status"] == "succeeded" and done["attempts"] == 2, done
    assert done["result"]["cpu_seconds"] >= 0.95, done
    log = w.stderr()
    assert f"job {job} (burn) attempt 1: burn_starved: the burn got " in log, log[-3000:]
    assert metric(w.admin_port, "surge_jobs_finished_total", type="burn", outcome="retry") == 1
    assert metric(w.admin_port, "surge_jobs_finished_total", type="burn", outcome="succeeded") == 1


def test_every_postgres_step_counts_against_the_job_deadline(surge, redis, postgres):
    """A lock on the items table holds the reads and the PREPARE of every
    connection opened meanwhile: no read runs longer than
    SURGE_JOB_TIMEOUT_SECONDS (plus slack), the worker gives up on a PREPARE
    at that deadline and says so in /readyz, and every read succeeds once the
    lock is gone."""
    timeout, slack = 2, 3
    api = surge.api()
    w = surge.worker(SURGE_JOB_TIMEOUT_SECONDS=timeout, SURGE_WORKER_READ_CONCURRENCY=2,
                     SURGE_MAX_ATTEMPTS=20)
    poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
    resp = Resp(redis.port)
    keys = []

    def check_no_read_overruns():
        now = now_ms()
        for key, h in zip(keys, resp.hashes(keys)):
            if h.get("status") == "running":
                age = (now - iso_ms(h["started_at"])) / 1000
                assert age <= timeout + slack, \
                    f"{key} has run {age:.1f} s with a {timeout} s deadline: {h}"

    with TableLock(postgres):
        ids = [post_job(api.http_port, "/jobs/read", {"item_id": 50 + n}) for n in range(6)]
        keys = [f"surge:job:{i}" for i in ids]
        deadline = time.monotonic() + 45
        while True:
            check_no_read_overruns()
            pg = readyz(w)[1]["checks"]["postgres"]
            if "prepare timed out" in pg.get("error", ""):
                break
            assert time.monotonic() < deadline, \
                f"no PREPARE given up after 45 s of the lock; /readyz postgres: {pg}"
            time.sleep(0.1)
        check_no_read_overruns()
    for i in ids:
        job = poll_job(api.http_port, i, timeout=60)
        assert job["status"] == "succeeded", job
        took = (iso_ms(job["finished_at"]) - iso_ms(job["started_at"])) / 1000
        assert took <= timeout + slack, f"the last attempt took {took:.1f} s: {job}"


# --------------------------------------------------------------------------
# retries, backoff, dead list


def test_retries_follow_the_backoff_then_dead(surge, redis, postgres):
    """Reads that PostgreSQL refuses (a role that may not read the items):
    each failure is scheduled on surge:retry at finished_at + 1 s, 2 s, 4 s...
    times a factor in [0.5, 1); the job does not run again before that; after
    SURGE_MAX_ATTEMPTS it is dead, on surge:dead, with its last error."""
    attempts_max = 4
    api = surge.api()
    w = surge.worker(SURGE_MAX_ATTEMPTS=attempts_max, SURGE_PG_DSN=postgres.noread_dsn)
    ids = [post_job(api.http_port, "/jobs/read", {"item_id": 5 + n}) for n in range(12)]
    resp = Resp(redis.port)
    seen = {i: {} for i in ids}  # id -> attempts -> snapshot of the failed state
    started = {i: {} for i in ids}  # id -> attempts -> started_at (ms)
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        keys = [f"surge:job:{i}" for i in ids]
        hashes = resp.hashes(keys)
        scores = resp.pipeline([("ZSCORE", "surge:retry", i) for i in ids])
        for i, h, score in zip(ids, hashes, scores):
            n = int(h.get("attempts", 0))
            if h.get("started_at") and n:
                started[i].setdefault(n, iso_ms(h["started_at"]))
            if h.get("status") in ("failed", "dead") and n not in seen[i]:
                seen[i][n] = dict(h, zscore=score)
        if all(h.get("status") == "dead" for h in hashes):
            break
        time.sleep(0.02)

    delays = []
    for i in ids:
        for n in range(1, attempts_max):
            snap = seen[i].get(n)
            assert snap is not None, f"job {i}: attempt {n}'s failure never seen: {seen[i]}"
            assert snap["status"] == "failed", snap
            err = json.loads(snap["error"])
            assert err["code"] == "database_error" and "permission denied" in err["message"], snap
            retry_at = int(snap["retry_at"])
            assert snap["zscore"] is not None and int(float(snap["zscore"])) == retry_at, \
                f"surge:retry score differs from retry_at: {snap}"
            base = 1000 * 2 ** (n - 1)
            delay = retry_at - iso_ms(snap["finished_at"])
            assert 0.5 * base <= delay < base + 5, \
                f"attempt {n}: retry {delay} ms after the failure, expected [{base // 2}, {base})"
            delays.append((n, delay / base))
            nxt = started[i].get(n + 1)
            assert nxt is not None and nxt >= retry_at, \
                f"attempt {n + 1} started at {nxt}, before its retry_at {retry_at}"
        final = resp.hgetall(f"surge:job:{i}")
        assert final["status"] == "dead" and int(final["attempts"]) == attempts_max, final
        assert json.loads(final["error"])["code"] == "database_error", final
        job = get_job(api.http_port, i)
        assert job["status"] == "dead" and job["error"]["code"] == "database_error", job
    assert sorted(resp.call("LRANGE", "surge:dead", 0, -1)) == sorted(ids)
    assert resp.call("ZCARD", "surge:retry") == 0
    factors = [f for _, f in delays]
    # The jitter spreads the retries: not all at the same point of the window.
    assert max(factors) - min(factors) > 0.05, f"no jitter in the backoff: {factors}"
    assert metric(w.admin_port, "surge_jobs_finished_total", type="read", outcome="retry") \
        == len(ids) * (attempts_max - 1)
    assert metric(w.admin_port, "surge_jobs_finished_total", type="read", outcome="dead") \
        == len(ids)
    print(f"\nbackoff factors seen (delay / base): min {min(factors):.3f}, "
          f"max {max(factors):.3f} over {len(factors)} retries")


def test_poison_jobs_end_dead_or_failed_and_the_worker_goes_on(surge, redis):
    api = surge.api()
    w = surge.worker()
    resp = Resp(redis.port)
    created = "2026-01-01T00:00:00.000Z"
    bare = "7ZZZZZZZZZZZZZZZZZZZZZZZZ0"        # an id with no hash at all
    mine = "7ZZZZZZZZZZZZZZZZZZZZZZZZ1"        # a type no worker knows
    bad_params = "7ZZZZZZZZZZZZZZZZZZZZZZZZ2"  # item_id is not a number
    no_params = "7ZZZZZZZZZZZZZZZZZZZZZZZZ3"   # params missing from the hash
    garbage = "not-a-job-id:" + "x" * 40       # not an id the api would make
    resp.pipeline([
        ("HSET", f"surge:job:{mine}", "type", "mine", "params", "{}", "status", "queued",
         "attempts", "0", "created_at", created),
        ("HSET", f"surge:job:{bad_params}", "type", "read", "params", '{"item_id":"x"}',
         "status", "queued", "attempts", "0", "created_at", created),
        ("HSET", f"surge:job:{no_params}", "type", "read", "status", "queued",
         "attempts", "0", "created_at", created),
    ])
    for i in (bare, mine, bad_params, no_params, garbage):
        resp.call("LPUSH", "surge:queue:read", i)
    good = post_job(api.http_port, "/jobs/read", {"item_id": 77})
    assert poll_job(api.http_port, good)["status"] == "succeeded"

    poll_until(lambda: resp.call("LLEN", "surge:queue:read") == 0
               and resp.call("LLEN", processing_key(worker_name(w))) == 0, 10,
               what="the poison jobs to leave the queue and the worker's list")
    dead = resp.call("LRANGE", "surge:dead", 0, -1)
    assert bare in dead and garbage in dead, dead
    job = get_job(api.http_port, bare)
    assert job["status"] == "dead", job
    assert job["error"]["code"] == "unreadable_job" and job["error"]["message"], job

    for i, code in ((mine, "unknown_type"), (bad_params, "bad_params"), (no_params, "bad_params")):
        job = poll_job(api.http_port, i, timeout=10)
        assert job["status"] in ("failed", "dead"), job
        assert job["error"]["code"] == code and job["error"]["message"], job
        if job["status"] == "failed":
            assert i not in dead, f"a failed job is not on the dead list: {job}"
        assert resp.call("ZSCORE", "surge:retry", i) is None, "input that can never work is retried"
    assert "item_id" in get_job(api.http_port, bad_params)["error"]["message"]
    # The worker is alive and still works.
    assert http(w.admin_port, "GET", "/healthz").status == 200
    again = post_job(api.http_port, "/jobs/read", {"item_id": 78})
    assert poll_job(api.http_port, again)["status"] == "succeeded"
    assert "job_unreadable" in w.stderr()


def test_a_hand_written_job_hash_reads_as_utf8_json(api, redis):
    """GET /jobs/{id} of a hash written by hand with bytes that are not UTF-8
    still answers JSON, which is UTF-8 (RFC 8259)."""
    resp = Resp(redis.port)
    job_id = "7ZZZZZZZZZZZZZZZZZZZZZZZZ7"
    resp.call("HSET", f"surge:job:{job_id}", "type", b"r\xffad", "status", "dead",
              "attempts", "1", "worker", b"w\xe9",
              "error", b'{"code":"x","message":"caf\xc3"}')
    r = http(api.http_port, "GET", f"/jobs/{job_id}")
    assert r.status == 200, r
    try:
        job = json.loads(r.body.decode("utf-8"))
    except UnicodeDecodeError as e:
        pytest.fail(f"GET /jobs/{job_id} is not UTF-8 ({e}): {r.body!r}")
    assert job["id"] == job_id and job["status"] == "dead", job


# --------------------------------------------------------------------------
# graceful shutdown


def test_sigterm_mid_burn_requeues_and_another_worker_finishes(surge, redis):
    """A burn cut short by SIGTERM goes back at the head of the burn queue,
    its attempt not counted, ahead of the burn that waited behind it; a read
    posted meanwhile did not wait for the burn."""
    grace = 3
    api = surge.api()
    w1 = surge.worker(SURGE_SHUTDOWN_GRACE_SECONDS=grace, SURGE_WORKER_BURN_CONCURRENCY=1)
    burn = post_job(api.http_port, "/jobs/burn", {"seconds": 10})
    wait_started(w1, 1, "burn")
    waiting = post_job(api.http_port, "/jobs/burn", {"seconds": 1})  # queued behind it
    read = post_job(api.http_port, "/jobs/read", {"item_id": 3})
    assert poll_job(api.http_port, read)["worker"] == worker_name(w1)
    code, took = sigterm_and_time(w1, grace + 10)
    assert code == 0, f"surge-worker exited with {code}:\n{w1.stderr()[-3000:]}"
    assert took <= grace + 1, f"exit took {took:.2f} s with a {grace} s grace period"
    assert "job_requeued" in w1.stderr()
    resp = Resp(redis.port)
    h = resp.hgetall(f"surge:job:{burn}")
    assert h["status"] == "queued" and h["attempts"] == "0", f"attempt counted: {h}"
    # Back at the head of the queue (the right end is taken first).
    assert resp.call("LRANGE", "surge:queue:burn", 0, -1) == [waiting, burn]
    w2 = surge.worker()
    job = poll_job(api.http_port, burn, timeout=90)
    assert job["status"] == "succeeded", job
    assert job["worker"] == worker_name(w2) and job["attempts"] == 1, job
    assert job["result"]["wall_seconds"] >= 9.5, job
    assert poll_job(api.http_port, waiting, timeout=30)["status"] == "succeeded"
    print(f"\nSIGTERM mid-burn: worker exited 0 after {took:.2f} s (grace {grace} s)")


def test_sigterm_finishes_reads_in_flight_and_fetches_no_more(surge, redis, postgres):
    """Reads held up by a table lock when SIGTERM comes are finished, within
    the grace period, and the worker takes nothing new meanwhile."""
    api = surge.api()
    w = surge.worker(SURGE_SHUTDOWN_GRACE_SECONDS=30, SURGE_WORKER_READ_CONCURRENCY=4)
    poll_until(lambda: readyz(w)[0] == 200, 15, what="the worker ready")
    resp = Resp(redis.port)
    with TableLock(postgres) as lock:
        t_lock = time.monotonic()
        ids = [post_job(api.http_port, "/jobs/read", {"item_id": 10 + n}) for n in range(4)]
        poll_until(lambda: all(resp.call("HGET", f"surge:job:{i}", "status") == "running"
                               for i in ids), 15, what="4 reads running")
        wait_started(w, 4, "read")
        w.signal(signal.SIGTERM)
        status, body = poll_until(lambda: (lambda r: r if r[0] == 503 else None)(readyz(w)), 10,
                                  what="/readyz 503 while draining")
        assert body["status"] != "ok", body
        later = [post_job(api.http_port, "/jobs/read", {"item_id": 20 + n}) for n in range(2)]
        # The lock holds the reads for as long as the test keeps it: two
        # heartbeats of the draining worker with the later jobs there to take.
        wait_beats(resp, worker_name(w), 2)
        assert w.running(), "the worker left before its reads were done"
        assert sorted(resp.call("LRANGE", "surge:queue:read", 0, -1)) == sorted(later), \
            "a stopping worker took new jobs"
        lock.release()
        code = w.wait_exit(30)
        took = time.monotonic() - t_lock
    assert code == 0, f"surge-worker exited with {code}:\n{w.stderr()[-3000:]}"
    for i in ids:
        job = get_job(api.http_port, i)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
    for i in later:
        h = resp.hgetall(f"surge:job:{i}")
        assert h["status"] == "queued" and h["attempts"] == "0", h
    print(f"\nSIGTERM with 4 reads in flight: all finished, exit 0, {took:.2f} s after the lock")


def test_api_sigterm_answers_requests_in_flight(surge, redis):
    """While the api's requests wait for Redis (a proxy holds them), SIGTERM:
    /readyz is 503 at once, new connections are refused, the requests in
    flight get their 202, and the api exits 0."""
    proxy = RedisProxy(redis.port)
    api = surge.api(SURGE_REDIS_URL=proxy.url, SURGE_REDIS_TIMEOUT_MS=30000,
                    SURGE_SHUTDOWN_GRACE_SECONDS=40)
    poll_until(lambda: readyz(api)[0] == 200, 10, what="/readyz 200 at start")
    resp = Resp(redis.port)
    answers, errors = [], []
    sent = threading.Semaphore(0)

    def post(n):
        try:
            with Client(api.http_port, timeout=15) as c:
                c.send(build_request("POST", "/jobs/read", {"item_id": n}))
                sent.release()
                answers.append(c.read("POST"))
        except (OSError, ConnectionClosed) as e:
            errors.append(e)
            sent.release()

    proxy.set_mode("hold")
    threads = [threading.Thread(target=post, args=(n,)) for n in range(1, 6)]
    for t in threads:
        t.start()
    for _ in threads:
        assert sent.acquire(timeout=10), "a request could not be sent"
    # The api has read the five requests and asked Redis (each enqueue script
    # carries its job's params; the script itself goes as EVALSHA after the first).
    poll_until(lambda: proxy.held(b"item_id") == 5, 10, what="the api to send the 5 jobs to Redis")
    api.signal(signal.SIGTERM)
    status, body = poll_until(
        lambda: (lambda r: r if r[1]["status"] == "shutting_down" else None)(readyz(api)), 10,
        interval=0.02, what="/readyz to say shutting_down after SIGTERM")
    assert status == 503, body

    def refused():
        try:
            Client(api.http_port, timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    poll_until(refused, 10, interval=0.02, what="new connections to be refused")
    assert not answers and not errors, "the requests were answered before Redis was"
    proxy.set_mode("pass")
    for t in threads:
        t.join(20)
    code = api.wait_exit(45)
    proxy.close()
    assert not errors, errors
    assert sorted(r.status for r in answers) == [202] * 5, answers
    assert code == 0, f"surge-api exited with {code}:\n{api.stderr()[-3000:]}"
    queued = resp.call("LRANGE", "surge:queue:read", 0, -1)
    assert sorted(queued) == sorted(json.loads(r.body)["id"] for r in answers)


def test_api_sigterm_with_a_slow_client_still_exits_0(surge):
    """A client in the middle of its headers when SIGTERM comes gets its 408
    at the deadline, and the api then exits 0 within its grace period."""
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=2, SURGE_SHUTDOWN_GRACE_SECONDS=6)
    with Client(api.http_port, timeout=10) as slow:
        slow.send(b"POST /jobs/read HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        time.sleep(0.2)
        code, took = sigterm_and_time(api, 15)
        try:
            r = slow.read()
            assert r.status == 408, r
        except ConnectionClosed:
            pass  # closed at shutdown: acceptable too
    assert code == 0, f"surge-api exited with {code} after {took:.1f} s:\n{api.stderr()[-3000:]}"
    assert took < 6, f"exit took {took:.1f} s"
