"""A queue per job type, and concurrency per kind of work (docs/architecture.md,
"Queues and concurrency"): reads never wait behind burns. Burns run on
threads, at most SURGE_WORKER_BURN_CONCURRENCY at once; reads on the
PostgreSQL pool, at most SURGE_WORKER_READ_CONCURRENCY. Recovery, retries and
requeues put an id back on the queue of its own type, and while PostgreSQL is
away a worker takes no read but still takes burns."""

import statistics

from helpers import get_job, poll_job, post_job
from reliability import (PostgresDown, Resp, assert_invariants, iso_ms, now_ms, poll_until,
                         processing_key, readyz, worker_name)

READ_QUEUE, BURN_QUEUE = "surge:queue:read", "surge:queue:burn"


def _running(port, ids):
    return [i for i in ids if get_job(port, i)["status"] == "running"]


def _intervals(jobs):
    """(started, finished) of each job, in ms, by their own timestamps."""
    return [(iso_ms(j["started_at"]), iso_ms(j["finished_at"])) for j in jobs]


def _most_at_once(intervals):
    events = sorted([(s, 1) for s, _ in intervals] + [(f, -1) for _, f in intervals])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def test_reads_stay_fast_while_burns_pile_up(surge, postgres):
    """A burst of burns fills every burn slot of the worker and more wait;
    then reads are posted. Each read finishes within 1 s of its POST (its own
    created_at to finished_at) while burns are still queued, and no more
    burns than SURGE_WORKER_BURN_CONCURRENCY ever run at once."""
    burn_slots, burn_seconds, waiting_burns, n_reads = 1, 2, 4, 20
    api = surge.api()
    worker = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=burn_slots)
    poll_until(lambda: readyz(worker)[0] == 200, 15, what="the worker ready")
    burns = [post_job(api.http_port, "/jobs/burn", {"seconds": burn_seconds})
             for _ in range(burn_slots + waiting_burns)]
    poll_until(lambda: len(_running(api.http_port, burns)) >= burn_slots, 15,
               what="every burn slot to hold a burn")
    items = [1 + (i * 7919) % 100000 for i in range(n_reads)]
    reads = [post_job(api.http_port, "/jobs/read", {"item_id": item}) for item in items]
    done = [poll_job(api.http_port, r, timeout=60) for r in reads]
    for job, item in zip(done, items):
        assert job["status"] == "succeeded" and job["result"] == postgres.item_json(item), job
    latency = sorted((iso_ms(j["finished_at"]) - iso_ms(j["created_at"])) / 1000 for j in done)
    print(f"\n{n_reads} reads posted while every burn slot was full and burns waited: "
          f"created_at -> finished_at p50 {statistics.median(latency):.3f} s, "
          f"max {latency[-1]:.3f} s")
    assert latency[-1] < 1.0, f"reads waited behind burns: {latency}"

    burns_done = [poll_job(api.http_port, b, timeout=60 + 20 * burn_seconds) for b in burns]
    assert all(b["status"] == "succeeded" for b in burns_done), burns_done
    last_read = max(iso_ms(j["finished_at"]) for j in done)
    last_burn_start = max(s for s, _ in _intervals(burns_done))
    assert last_read < last_burn_start, \
        "the reads were not measured while burns were still queued"
    assert _most_at_once(_intervals(burns_done)) == burn_slots, _intervals(burns_done)


def test_burns_run_while_postgres_is_away(surge, redis, postgres):
    """Without PostgreSQL the worker takes no read, but still takes burns:
    the pause is per queue. A dead worker's read and burn, a read whose retry
    comes due, and ids an older version left on the shared surge:queue all go
    to the queue of their own type: the read ones wait there, the burns run.
    PostgreSQL back, every read succeeds at its first attempt."""
    api = surge.api()
    resp = Resp(redis.port)
    created = "2026-01-01T00:00:00.000Z"

    def job(jid, type_, params, **fields):
        """A job hash as the api and the workers leave it."""
        fields.setdefault("attempts", "0")
        resp.call("HSET", f"surge:job:{jid}", "type", type_, "params", params,
                  "created_at", created, *sum(fields.items(), ()))
        return jid

    ghost = "ghost-1"
    ghost_read = job("01ARZ3NDEKTSV4RRFFQ69G5F01", "read", '{"item_id":5}', status="running",
                     worker=ghost, lease="1", attempts="1")
    ghost_burn = job("01ARZ3NDEKTSV4RRFFQ69G5F02", "burn", '{"seconds":1}', status="running",
                     worker=ghost, lease="1", attempts="1")
    resp.call("RPUSH", processing_key(ghost), ghost_read, ghost_burn)
    resp.call("ZADD", "surge:workers", 1, ghost)  # beat long ago, no heartbeat key
    retry_read = job("01ARZ3NDEKTSV4RRFFQ69G5F03", "read", '{"item_id":6}', status="failed",
                     retry_at=str(now_ms()), attempts="1")
    resp.call("ZADD", "surge:retry", now_ms(), retry_read)
    shared_read = job("01ARZ3NDEKTSV4RRFFQ69G5F04", "read", '{"item_id":7}', status="queued")
    shared_burn = job("01ARZ3NDEKTSV4RRFFQ69G5F05", "burn", '{"seconds":1}', status="queued")
    resp.call("LPUSH", "surge:queue", shared_read, shared_burn)

    with PostgresDown(postgres):
        worker = surge.worker(SURGE_HEARTBEAT_SECONDS=3)
        posted_burn = post_job(api.http_port, "/jobs/burn", {"seconds": 1})
        posted_read = post_job(api.http_port, "/jobs/read", {"item_id": 8})
        burns = [ghost_burn, shared_burn, posted_burn]
        for b in burns:
            assert poll_job(api.http_port, b, timeout=60)["status"] == "succeeded", b
        reads = [ghost_read, retry_read, shared_read, posted_read]
        poll_until(lambda: sorted(resp.call("LRANGE", READ_QUEUE, 0, -1)) == sorted(reads), 20,
                   what="every read to wait on the read queue")
        assert resp.call("LLEN", BURN_QUEUE) == 0 and resp.call("LLEN", "surge:queue") == 0
        assert resp.call("LLEN", processing_key(worker_name(worker))) == 0
        assert "taking no read job" in worker.stderr(), worker.stderr()[-2000:]
    for r in reads:
        j = poll_job(api.http_port, r, timeout=60)
        assert j["status"] == "succeeded", j
        # One attempt more than before: none was spent while PostgreSQL was away.
        assert j["attempts"] == (2 if r in (ghost_read, retry_read) else 1), j
    assert_invariants(resp)


def test_a_job_on_another_types_queue_runs_in_its_own_slot(surge, redis):
    """A burn id put on the read queue by hand is not run in a read slot:
    it goes back on the burn queue without counting the attempt, and waits
    for the one burn slot held by another burn."""
    api = surge.api()
    worker = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=1)
    poll_until(lambda: readyz(worker)[0] == 200, 15, what="the worker ready")
    resp = Resp(redis.port)
    first = post_job(api.http_port, "/jobs/burn", {"seconds": 2})
    poll_until(lambda: _running(api.http_port, [first]), 15, what="the first burn to run")
    stray = "01ARZ3NDEKTSV4RRFFQ69G5F06"
    resp.call("HSET", f"surge:job:{stray}", "type", "burn", "params", '{"seconds":1}',
              "status", "queued", "attempts", "0", "created_at", "2026-01-01T00:00:00.000Z")
    resp.call("LPUSH", READ_QUEUE, stray)
    jobs = [poll_job(api.http_port, j, timeout=60) for j in (first, stray)]
    assert all(j["status"] == "succeeded" for j in jobs), jobs
    assert jobs[1]["attempts"] == 1, jobs[1]
    assert _most_at_once(_intervals(jobs)) == 1, _intervals(jobs)
    assert f"job {stray} (burn) goes back on {BURN_QUEUE}" in worker.stderr(), \
        worker.stderr()[-2000:]
