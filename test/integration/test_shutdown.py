"""Signals: both binaries stop cleanly on SIGTERM; no accepted job is lost
when a worker dies in the middle of it."""

import signal
import socket
import time

from helpers import Client, http, poll_job, post_job
from reliability import wait_started


def test_api_sigterm_exits_0(surge):
    api = surge.api()
    assert post_job(api.http_port, "/jobs/read", {"item_id": 1})
    api.signal(signal.SIGTERM)
    code = api.wait_exit(15)
    assert code == 0, f"surge-api exited with {code}:\n{api.stderr()[-3000:]}"


def test_api_sigterm_with_idle_keep_alive_connection(surge):
    api = surge.api(SURGE_SHUTDOWN_GRACE_SECONDS=3)
    with Client(api.http_port) as c:
        assert c.request("GET", "/jobs/x").status == 404
        api.signal(signal.SIGTERM)
        code = api.wait_exit(15)
    assert code == 0, f"surge-api exited with {code}:\n{api.stderr()[-3000:]}"


def test_worker_sigterm_exits_0(surge):
    worker = surge.worker()
    worker.signal(signal.SIGTERM)
    code = worker.wait_exit(15)
    assert code == 0, f"surge-worker exited with {code}:\n{worker.stderr()[-3000:]}"


def test_worker_sigterm_finishes_a_short_job(surge):
    api = surge.api()
    worker = surge.worker(SURGE_SHUTDOWN_GRACE_SECONDS=10)
    job_id = post_job(api.http_port, "/jobs/burn", {"seconds": 2})
    wait_started(worker, 1, "burn")
    worker.signal(signal.SIGTERM)
    # Draining: not ready any more, still alive, the job still running.
    deadline = time.monotonic() + 1.0
    r = None
    while time.monotonic() < deadline:
        r = http(worker.admin_port, "GET", "/readyz", timeout=2)
        if r.status == 503:
            break
        time.sleep(0.05)
    assert r is not None and r.status == 503, f"/readyz while draining: {r!r}"
    assert http(api.http_port, "GET", f"/jobs/{job_id}").json()["status"] == "running"
    code = worker.wait_exit(20)
    assert code == 0, f"surge-worker exited with {code}:\n{worker.stderr()[-3000:]}"
    job = http(api.http_port, "GET", f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded", f"the job was not drained within the grace period: {job}"


def test_job_of_a_killed_worker_is_recovered(surge, redis):
    # A short heartbeat so that recovery comes quickly (the TTL is read back).
    api = surge.api()
    w1 = surge.worker(SURGE_HEARTBEAT_SECONDS=3)
    job_id = post_job(api.http_port, "/jobs/burn", {"seconds": 3})
    poll_job(api.http_port, job_id, statuses=("running",), timeout=15)
    wid = f"{socket.gethostname()}-{w1.pid}"
    assert redis.lines("LRANGE", f"surge:processing:{wid}", 0, -1) == [job_id]
    ttl = int(redis.cli("TTL", f"surge:worker:{wid}"))
    assert ttl > 0, f"heartbeat surge:worker:{wid} has TTL {ttl}"
    w1.signal(signal.SIGKILL)
    w1.wait_exit(10)
    t0 = time.monotonic()
    w2 = surge.worker(SURGE_HEARTBEAT_SECONDS=3)
    job = poll_job(api.http_port, job_id, statuses=("succeeded", "dead"), timeout=ttl + 40)
    assert job["status"] == "succeeded", job
    assert job["worker"] == f"{socket.gethostname()}-{w2.pid}", job
    assert job["attempts"] >= 1, job
    assert redis.cli("LLEN", f"surge:processing:{wid}") == "0"
    assert time.monotonic() - t0 < ttl + 40
