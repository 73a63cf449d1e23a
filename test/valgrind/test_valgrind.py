"""A short session of surge-api and surge-worker (build/release) under
valgrind: jobs of each type and outcome, error answers, probes, then SIGTERM.
Neither binary may show a memory error or a definite leak."""

import re
import signal
import subprocess

import pytest

import helpers
from helpers import assert_error, http, poll_job, post_job

VALGRIND_OPTS = ["--leak-check=full", "--errors-for-leak-kinds=definite",
                 "--error-exitcode=99", "--num-callers=30", "--child-silent-after-fork=yes"]


class Valgrinded:
    def __init__(self, name, env, tmp_path):
        self.name = name
        self.env = env
        self.admin_port = int(env["SURGE_ADMIN_PORT"])
        self.http_port = int(env["SURGE_HTTP_PORT"])
        self.vg_log = tmp_path / f"{name}.valgrind"
        self.stderr_path = tmp_path / f"{name}.stderr"
        binary = helpers.REPO_ROOT / "build" / "release" / name
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: run `make` first")
        self.err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [helpers.require_program("valgrind"), *VALGRIND_OPTS, f"--log-file={self.vg_log}",
             str(binary)],
            env=env, stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err,
            cwd=str(helpers.REPO_ROOT))

    def wait_healthy(self, timeout=90):
        def up():
            assert self.proc.poll() is None, f"{self.name} exited: {self.report()}"
            return http(self.admin_port, "GET", "/healthz", timeout=5).status == 200
        helpers.wait_for(up, timeout, interval=0.25, message=f"{self.name} under valgrind")

    def stop(self, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail(f"{self.name} did not exit {timeout} s after SIGTERM:\n"
                            f"{self.report()}")
        self.err.close()
        return self.proc.returncode

    def report(self):
        return (f"--- {self.name} stderr ---\n{helpers.tail(self.stderr_path, 40)}\n"
                f"--- valgrind ---\n{helpers.tail(self.vg_log, 120)}")


def test_short_session_has_no_errors_or_definite_leaks(postgres, redis, tmp_path):
    surge = helpers.Surge(redis, postgres, tmp_path)
    # Valgrind makes everything some 20 times slower: generous deadlines.
    common = {"SURGE_REDIS_TIMEOUT_MS": 5000, "SURGE_SHUTDOWN_GRACE_SECONDS": 60,
              "SURGE_JOB_TIMEOUT_SECONDS": 60, "SURGE_MAX_BODY_BYTES": 1024}
    api = Valgrinded("surge-api", surge.env("surge-api", **common), tmp_path)
    worker = Valgrinded("surge-worker", surge.env("surge-worker", SURGE_WORKER_READ_CONCURRENCY=2,
                                                  SURGE_MAX_ATTEMPTS=5, **common), tmp_path)
    procs = [api, worker]
    try:
        for p in procs:
            p.wait_healthy()
        port = api.http_port
        ok_read = post_job(port, "/jobs/read", {"item_id": 42})
        via_jobs = post_job(port, "/jobs", {"type": "read", "params": {"item_id": 7}})
        missing = post_job(port, "/jobs/read", {"item_id": 999999})
        burn = post_job(port, "/jobs/burn", {"seconds": 1})
        burn2 = post_job(port, "/jobs", {"type": "burn", "params": {"seconds": 1}})
        # A poison job: an id with no hash.
        redis.cli("LPUSH", "surge:queue:read", "7ZZZZZZZZZZZZZZZZZZZZZZZZ9")
        assert_error(http(port, "POST", "/jobs", "{bad", timeout=30), 400, "bad_json")
        assert_error(http(port, "POST", "/jobs", {"type": "mine"}, timeout=30), 400,
                     "unknown_type")
        assert_error(http(port, "GET", "/jobs/01M8A4E1EA2HS751PXC6HB2TWS", timeout=30), 404)
        assert_error(http(port, "DELETE", "/jobs", timeout=30), 405)
        assert_error(http(port, "POST", "/jobs/read", '{"item_id":1,"pad":"' + "x" * 2000 + '"}',
                          timeout=30), 413)
        assert_error(http(port, "GET", "/jobs/x", headers={"X-Big": "a" * 9000}, timeout=30), 431)
        assert_error(http(port, "POST", "/jobs/read", "{}", content_type="text/plain",
                          timeout=30), 415)
        for job_id, status in ((ok_read, "succeeded"), (via_jobs, "succeeded"),
                               (missing, "failed"), (burn, "succeeded"), (burn2, "succeeded")):
            assert poll_job(port, job_id, timeout=90)["status"] == status
        assert poll_job(port, "7ZZZZZZZZZZZZZZZZZZZZZZZZ9", timeout=60)["status"] == "dead"
        for p in procs:
            for path in ("/readyz", "/metrics"):
                assert http(p.admin_port, "GET", path, timeout=30).status == 200
        # Keep-alive and pipelining on one connection.
        with helpers.Client(port, timeout=30) as c:
            c.send(helpers.build_request("GET", f"/jobs/{ok_read}")
                   + helpers.build_request("GET", "/jobs/nope"))
            assert c.read().status == 200 and c.read().status == 404
        # PostgreSQL away and back: the pool's broken-connection path; the
        # worker takes no read meanwhile (its readiness says why), the read
        # posted then waits in its queue, and a burn still runs.
        postgres.stop()
        try:
            helpers.wait_for(lambda: "taking no read job" in http(
                worker.admin_port, "GET", "/readyz", timeout=30).body.decode(),
                60, interval=0.25, message="the worker to stop taking reads")
            during = post_job(port, "/jobs/read", {"item_id": 43})
            burn3 = post_job(port, "/jobs/burn", {"seconds": 1})
            assert poll_job(port, burn3, timeout=90)["status"] == "succeeded"
            assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [during]
        finally:
            postgres.start()
        job = poll_job(port, during, statuses=("succeeded", "dead"), timeout=90)
        assert job["status"] == "succeeded" and job["attempts"] == 1, job
    finally:
        codes = {p.name: p.stop() for p in procs}
    for p in procs:
        text = p.vg_log.read_text(errors="replace")
        summary = re.search(r"ERROR SUMMARY: (\d+) errors", text)
        assert summary, f"no valgrind summary for {p.name}:\n{p.report()}"
        definite = re.search(r"definitely lost: ([\d,]+) bytes", text)
        lost = int(definite.group(1).replace(",", "")) if definite else 0
        print(f"\n{p.name}: exit {codes[p.name]}, valgrind errors {summary.group(1)}, "
              f"definitely lost {lost} bytes")
        assert codes[p.name] == 0 and summary.group(1) == "0" and lost == 0, p.report()
