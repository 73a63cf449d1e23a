"""Jobs end to end: the API accepts them, Redis holds them, a worker runs them
against PostgreSQL or the CPU, and GET /jobs/{id} tells the outcome."""

import json
import re
import socket
import subprocess
import threading
import time

import pytest

from helpers import (ISO_MS_UTC, assert_error, get_job, http, poll_job, post_job, queued)

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
JOB_FIELDS = {"id", "type", "status", "attempts", "params", "result", "error",
              "created_at", "started_at", "finished_at", "worker", "retry_at"}


def check_succeeded_read(postgres, job, item_id, worker_proc):
    assert job["status"] == "succeeded", job
    assert job["type"] == "read", job
    assert set(job) >= JOB_FIELDS, f"missing fields {JOB_FIELDS - set(job)}: {job}"
    assert job["params"] == {"item_id": item_id}, job
    assert job["result"] == postgres.item_json(item_id), job
    assert job["error"] is None, job
    assert job["attempts"] == 1, job
    for ts in ("created_at", "started_at", "finished_at"):
        assert isinstance(job[ts], str) and ISO_MS_UTC.match(job[ts]), f"{ts}: {job}"
    assert job["created_at"] <= job["started_at"] <= job["finished_at"], job
    assert job["worker"] == f"{socket.gethostname()}-{worker_proc.pid}", job


@pytest.mark.parametrize("item_id", [1, 42, 100000])
def test_read_job_returns_the_row(surge, postgres, item_id):
    api = surge.api()
    worker = surge.worker()
    job_id = post_job(api.http_port, "/jobs", {"type": "read", "params": {"item_id": item_id}})
    job = poll_job(api.http_port, job_id)
    assert job["id"] == job_id
    check_succeeded_read(postgres, job, item_id, worker)


def test_read_endpoint_returns_the_row(surge, postgres):
    api = surge.api()
    worker = surge.worker()
    r = http(api.http_port, "POST", "/jobs/read", {"item_id": 77777})
    assert r.status == 202, r
    body = r.json()
    assert set(body) == {"id", "type", "status"}, body
    assert body["type"] == "read" and body["status"] == "queued", body
    job = poll_job(api.http_port, body["id"])
    check_succeeded_read(postgres, job, 77777, worker)


def test_read_of_missing_item_fails_not_found(surge, redis):
    api = surge.api()
    surge.worker(SURGE_MAX_ATTEMPTS=1)
    job_id = post_job(api.http_port, "/jobs/read", {"item_id": 100001})
    job = poll_job(api.http_port, job_id)
    assert job["status"] in ("failed", "dead"), job
    assert isinstance(job["error"], dict), job
    assert job["error"]["code"] == "not_found", job
    assert isinstance(job["error"].get("message"), str) and job["error"]["message"], job
    assert job["result"] is None, job
    assert job["attempts"] == 1, job
    # A final failure is not waiting for another attempt.
    assert job["retry_at"] is None, job
    if job["status"] == "dead":
        assert job_id in redis.lines("LRANGE", "surge:dead", 0, -1)


def test_burn_job_uses_cpu_and_worker_stays_live(surge):
    api = surge.api()
    worker = surge.worker()
    job_id = post_job(api.http_port, "/jobs/burn", {"seconds": 2})
    poll_job(api.http_port, job_id, statuses=("running", "succeeded", "failed", "dead"), timeout=15)
    # While the CPU loop runs, the worker's admin loop must still answer.
    slowest = 0.0
    answers = 0
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        t0 = time.monotonic()
        r = http(worker.admin_port, "GET", "/healthz", timeout=2)
        slowest = max(slowest, time.monotonic() - t0)
        assert r.status == 200, r
        answers += 1
        time.sleep(0.1)
    assert answers >= 5 and slowest < 1.0, f"/healthz took up to {slowest:.3f} s during a burn"
    job = poll_job(api.http_port, job_id)
    assert job["status"] == "succeeded", job
    assert job["type"] == "burn" and job["params"] == {"seconds": 2}, job
    res = job["result"]
    assert res["seconds_requested"] == 2, job
    assert res["wall_seconds"] >= 2.0 - 0.01, job
    assert res["cpu_seconds"] >= 1.8, job
    assert res["cpu_seconds"] <= res["wall_seconds"] + 0.05, job


def test_burn_via_jobs_route(surge):
    api = surge.api()
    surge.worker()
    job_id = post_job(api.http_port, "/jobs", {"type": "burn", "params": {"seconds": 1}})
    job = poll_job(api.http_port, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["seconds_requested"] == 1, job
    assert job["result"]["cpu_seconds"] >= 0.8, job


def test_burn_default_seconds(surge):
    api = surge.api(SURGE_BURN_DEFAULT_SECONDS=1)
    surge.worker(SURGE_BURN_DEFAULT_SECONDS=1)
    job_id = post_job(api.http_port, "/jobs/burn", {})
    job = poll_job(api.http_port, job_id)
    assert job["status"] == "succeeded", job
    assert job["result"]["seconds_requested"] == 1, job


def test_unknown_job_is_404(api):
    for job_id in ("01JDX000000000000000000000", "nope", "x" * 40):
        r = http(api.http_port, "GET", f"/jobs/{job_id}")
        assert_error(r, 404, "not_found")


def test_accepted_answer_and_queue_while_no_worker(surge, redis, postgres):
    api = surge.api()
    r = http(api.http_port, "POST", "/jobs", {"type": "read", "params": {"item_id": 5}})
    assert r.status == 202, r
    assert r.header("content-type", "").split(";")[0] == "application/json", r
    body = r.json()
    assert set(body) == {"id", "type", "status"}, body
    job_id = body["id"]
    assert body == {"id": job_id, "type": "read", "status": "queued"}
    assert r.header("location") == f"/jobs/{job_id}", r
    assert ULID.match(job_id), f"id {job_id!r} is not a 26-character ULID-style id"

    # No worker runs: the id waits on the read queue and the hash says queued.
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [job_id]
    assert redis.cli("EXISTS", "surge:queue:burn") == "0"
    h = redis.hgetall(f"surge:job:{job_id}")
    for field in ("type", "params", "status", "attempts", "created_at"):
        assert field in h, f"field {field} missing from surge:job:{job_id}: {h}"
    assert h["type"] == "read" and h["status"] == "queued" and h["attempts"] == "0", h
    assert json.loads(h["params"]) == {"item_id": 5}, h
    assert ISO_MS_UTC.match(h["created_at"]), h
    job = get_job(api.http_port, job_id)
    assert set(job) >= JOB_FIELDS, job
    assert job["status"] == "queued" and job["attempts"] == 0, job
    for field in ("result", "error", "started_at", "finished_at", "worker", "retry_at"):
        assert job[field] is None, f"{field} of a queued job: {job}"
    assert job["created_at"] == h["created_at"], job

    # A worker comes, takes it and runs it.
    worker = surge.worker(SURGE_RESULT_TTL_SECONDS=600)
    job = poll_job(api.http_port, job_id)
    check_succeeded_read(postgres, job, 5, worker)
    assert queued(redis) == []
    wid = f"{socket.gethostname()}-{worker.pid}"
    assert redis.cli("LLEN", f"surge:processing:{wid}") == "0"
    h = redis.hgetall(f"surge:job:{job_id}")
    for field in ("type", "params", "status", "attempts", "created_at", "started_at",
                  "finished_at", "worker", "result"):
        assert field in h, f"field {field} missing from surge:job:{job_id}: {h}"
    assert h["status"] == "succeeded" and h["attempts"] == "1" and h["worker"] == wid, h
    for ts in ("started_at", "finished_at"):
        assert ISO_MS_UTC.match(h[ts]), h
    ttl = int(redis.cli("TTL", f"surge:job:{job_id}"))
    assert 0 < ttl <= 600, f"finished job hash TTL {ttl}"
    assert int(redis.cli("TTL", f"surge:worker:{wid}")) > 0, "worker heartbeat without TTL"


def test_queue_is_fifo_and_ids_are_time_ordered(surge, redis):
    api = surge.api()
    ids = []
    for n in range(1, 6):
        ids.append(post_job(api.http_port, "/jobs/read", {"item_id": n}))
        time.sleep(0.003)
    assert ids == sorted(ids), f"ids not time-ordered: {ids}"
    assert len(set(ids)) == len(ids)
    # LPUSH on the left, workers take from the right: oldest is last.
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == list(reversed(ids))
    # Each type has its own queue.
    burns = [post_job(api.http_port, "/jobs/burn", {"seconds": 1}) for _ in range(2)]
    assert redis.lines("LRANGE", "surge:queue:burn", 0, -1) == list(reversed(burns))
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == list(reversed(ids))


def test_key_prefix(surge, redis):
    api = surge.api(SURGE_KEY_PREFIX="t1:")
    job_id = post_job(api.http_port, "/jobs/read", {"item_id": 3})
    assert redis.lines("LRANGE", "t1:queue:read", 0, -1) == [job_id]
    assert redis.cli("EXISTS", "surge:queue:read") == "0"
    assert redis.hgetall(f"t1:job:{job_id}")["status"] == "queued"
    surge.worker(SURGE_KEY_PREFIX="t1:")
    assert poll_job(api.http_port, job_id)["status"] == "succeeded"


def test_many_jobs_two_workers(surge, postgres):
    api = surge.api()
    surge.worker(SURGE_WORKER_READ_CONCURRENCY=2)
    surge.worker(SURGE_WORKER_READ_CONCURRENCY=2)
    items = list(range(1000, 100001, 4999))
    ids = {}
    errors = []

    def post(item):
        try:
            ids[item] = post_job(api.http_port, "/jobs/read", {"item_id": item})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=post, args=(i,)) for i in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(ids) == len(items)
    for item, job_id in ids.items():
        job = poll_job(api.http_port, job_id)
        assert job["status"] == "succeeded", job
        assert job["result"] == postgres.item_json(item), job


def test_job_waits_on_queue_while_worker_stopped(surge, redis, postgres):
    api = surge.api()
    w1 = surge.worker()
    assert w1.stop() == 0
    job_id = post_job(api.http_port, "/jobs", {"type": "read", "params": {"item_id": 64}})
    time.sleep(0.5)
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [job_id]
    assert get_job(api.http_port, job_id)["status"] == "queued"
    w2 = surge.worker()
    job = poll_job(api.http_port, job_id)
    check_succeeded_read(postgres, job, 64, w2)


def _hset_bytes(redis, key, field, value):
    """HSET with a value of arbitrary bytes (redis-cli -x reads it from stdin)."""
    r = subprocess.run([redis.cli_path, "-h", "127.0.0.1", "-p", str(redis.port), "-x",
                        "HSET", key, field], input=value, capture_output=True, timeout=10)
    assert r.returncode == 0 and r.stdout.strip() in (b"0", b"1"), r


def test_invalid_stored_bytes_are_shown_as_u_fffd(api, redis):
    """Whatever bytes a job's hash holds, GET /jobs/{id} answers valid UTF-8
    JSON: a byte that is not part of valid UTF-8 becomes U+FFFD, stored JSON
    that is not valid UTF-8 is shown as a string."""
    job_id = post_job(api.http_port, "/jobs/read", {"item_id": 9})
    key = f"surge:job:{job_id}"
    _hset_bytes(redis, key, "type", b"read\xff")
    _hset_bytes(redis, key, "worker", b"w\xc3(x")                 # a lead byte without its tail
    _hset_bytes(redis, key, "status", b"fail\xc0\xafed")          # an overlong "/"
    _hset_bytes(redis, key, "result", b'{"name":"caf\xe9"}')       # Latin-1, not UTF-8
    _hset_bytes(redis, key, "error", b'{"code":"x","message":"\xed\xa0\x80"}')  # a surrogate
    r = http(api.http_port, "GET", f"/jobs/{job_id}")
    assert r.status == 200, r
    text = r.body.decode("utf-8")  # strict: fails on any invalid byte
    job = json.loads(text)
    assert job["type"] == "read\ufffd", job
    assert job["worker"] == "w\ufffd(x", job
    assert job["status"].startswith("fail\ufffd") and job["status"].endswith("ed"), job
    assert "\ufffd" in job["result"] and job["result"].startswith('{"name":"caf'), job
    assert isinstance(job["error"], str) and "\ufffd" in job["error"], job
    assert job["params"] == {"item_id": 9}, job  # valid JSON stays JSON
