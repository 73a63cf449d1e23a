"""The admin port of both binaries: /healthz, /readyz, /metrics."""

import re
import time

import pytest

from helpers import assert_error, http, poll_job, post_job
from reliability import Resp, wait_beats, worker_name

METRIC_LINE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*,?\})? '
    r'(-?[0-9.eE+-]+|NaN|[+-]Inf)( -?[0-9]+)?$')


def check_ready_body(body, components):
    assert body["status"] == "ok", body
    for name in components:
        check = body["checks"][name]
        assert check["status"] == "ok", body
        assert isinstance(check["latency_ms"], (int, float)) and check["latency_ms"] >= 0, body


def wait_ready(proc, timeout=10):
    """/readyz may lag the start by a check interval: poll it until 200."""
    deadline = time.monotonic() + timeout
    while True:
        r = http(proc.admin_port, "GET", "/readyz")
        if r.status == 200 or time.monotonic() > deadline:
            return r
        assert r.status == 503, r
        time.sleep(0.1)


def test_api_health_and_readiness(api):
    r = http(api.admin_port, "GET", "/healthz")
    assert r.status == 200, r
    r = wait_ready(api)
    assert r.status == 200, r
    assert r.header("content-type", "").split(";")[0] == "application/json", r
    check_ready_body(r.json(), ["redis"])
    assert "postgres" not in r.json()["checks"], "the api does not use PostgreSQL"


def test_worker_health_and_readiness(worker):
    r = http(worker.admin_port, "GET", "/healthz")
    assert r.status == 200, r
    r = wait_ready(worker)
    assert r.status == 200, r
    check_ready_body(r.json(), ["redis", "postgres"])


def test_admin_unknown_route_and_method(api, worker):
    for proc in (api, worker):
        assert_error(http(proc.admin_port, "GET", "/nope"), 404, "not_found")
        r = http(proc.admin_port, "POST", "/healthz", "{}")
        assert_error(r, 405, "method_not_allowed")
        assert "GET" in (r.header("allow") or ""), r
    # The admin port does not take jobs.
    r = http(api.admin_port, "POST", "/jobs", {"type": "read", "params": {"item_id": 1}})
    assert r.status in (404, 405), r


def parse_metrics(text):
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE"):
                assert re.match(r"^# TYPE \S+ (counter|gauge|histogram|summary|untyped)$", line), line
            continue
        assert METRIC_LINE.match(line), f"bad exposition line {line!r}"
        if "}" in line:
            end = line.rindex("}") + 1
            name_labels, value = line[:end], line[end:].split()[0]
        else:
            name_labels, value = line.split()[:2]
        samples[name_labels] = float(value)
    return samples


def metric(samples, name, **labels):
    """The sum of the samples of name whose labels include labels, or None."""
    total = None
    for key, value in samples.items():
        n, _, rest = key.partition("{")
        if n != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', rest))
        if all(got.get(k) == v for k, v in labels.items()):
            total = (total or 0) + value
    return total


def test_metrics(surge):
    api = surge.api()
    worker = surge.worker()
    for proc in (api, worker):
        assert wait_ready(proc).status == 200
    job_id = post_job(api.http_port, "/jobs/read", {"item_id": 4})
    assert poll_job(api.http_port, job_id)["status"] == "succeeded"

    r = http(api.admin_port, "GET", "/metrics")
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("text/plain"), r
    s = parse_metrics(r.body.decode())
    assert metric(s, "surge_jobs_enqueued_total", type="read") == 1, r.body.decode()
    assert metric(s, "surge_http_requests_total") is not None, r.body.decode()
    assert metric(s, "surge_http_request_duration_seconds_count") is not None, r.body.decode()
    assert metric(s, "surge_dependency_up", dependency="redis") == 1, r.body.decode()
    assert any(k.startswith("process_") for k in s), "no process_* metrics"

    def finished():
        r = http(worker.admin_port, "GET", "/metrics")
        assert r.status == 200, r
        return metric(parse_metrics(r.body.decode()), "surge_jobs_finished_total", type="read")
    deadline = time.monotonic() + 10
    while finished() != 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    r = http(worker.admin_port, "GET", "/metrics")
    s = parse_metrics(r.body.decode())
    assert metric(s, "surge_jobs_finished_total", type="read") == 1, r.body.decode()
    assert metric(s, "surge_job_duration_seconds_count", type="read") == 1, r.body.decode()
    assert metric(s, "surge_dependency_up", dependency="postgres") == 1, r.body.decode()
    assert any(k.startswith("process_") for k in s), "no process_* metrics"


def test_worker_readiness_follows_postgres(surge, redis, postgres):
    """PostgreSQL stops: the worker turns unready naming postgres, and a read
    job accepted meanwhile waits in the read queue (the worker takes no read
    without a PostgreSQL connection): it succeeds at its first attempt once PostgreSQL
    is back."""
    api = surge.api()
    worker = surge.worker()
    assert wait_ready(worker).status == 200
    postgres.stop()
    try:
        deadline = time.monotonic() + 15
        while True:
            r = http(worker.admin_port, "GET", "/readyz", timeout=5)
            if r.status == 503:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"worker /readyz still {r!r} 15 s after PostgreSQL stopped")
            time.sleep(0.2)
        body = r.json()
        assert body["checks"]["postgres"]["status"] != "ok", body
        assert body["checks"]["redis"]["status"] == "ok", body
        assert http(worker.admin_port, "GET", "/healthz", timeout=5).status == 200
        job_id = post_job(api.http_port, "/jobs/read", {"item_id": 31})
        # Two seconds of the worker's loop with the job there to take.
        wait_beats(Resp(redis.port), worker_name(worker), 2)
        assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [job_id]
    finally:
        postgres.start()
    job = poll_job(api.http_port, job_id, statuses=("succeeded", "dead"), timeout=60)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1, f"the job was tried while PostgreSQL was away: {job}"
    assert job["result"] == postgres.item_json(31), job
    deadline = time.monotonic() + 15
    while http(worker.admin_port, "GET", "/readyz", timeout=5).status != 200:
        if time.monotonic() > deadline:
            pytest.fail("worker /readyz not 200 15 s after PostgreSQL came back")
        time.sleep(0.2)
