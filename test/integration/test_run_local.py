"""scripts/run-local.sh (`make run`): on free ports and a data folder of its
own it starts Redis, PostgreSQL, the api and two workers; a read job works;
SIGINT stops every process it started; a second run reuses the data."""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from helpers import REPO_ROOT, bin_dir, clean_env, free_port, http, poll_job, post_job, port_is_open

SCRIPT = REPO_ROOT / "scripts" / "run-local.sh"


def free_port_run(n):
    """A port p such that p .. p+n-1 are all free on 127.0.0.1."""
    for _ in range(200):
        p = free_port()
        if p + n > 65535:
            continue
        socks = []
        try:
            for q in range(p, p + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", q))
            return p
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no run of free ports found")


def proc_start_time(pid):
    """(start time, state) of pid from /proc, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19], fields[0]


def descendants(root):
    children = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class LocalRun:
    def __init__(self, base):
        self.base = base
        self.data = base / "data"
        self.ports = {
            "SURGE_LOCAL_REDIS_PORT": free_port(),
            "SURGE_LOCAL_PG_PORT": free_port(),
            "SURGE_LOCAL_API_PORT": free_port(),
            "SURGE_LOCAL_ADMIN_PORT": free_port_run(3),
        }
        self.env = clean_env()
        self.env.update({k: str(v) for k, v in self.ports.items()})
        self.env["SURGE_LOCAL_DATA_DIR"] = str(self.data)
        self.env["SURGE_LOCAL_BIN_DIR"] = str(bin_dir())
        self.proc = None
        self.runs = 0

    @property
    def api_port(self):
        return self.ports["SURGE_LOCAL_API_PORT"]

    def start(self):
        self.runs += 1
        self.out_path = self.base / f"run-local-{self.runs}.out"
        self.out = open(self.out_path, "w")
        # As from a terminal: SIGINT at its default. A shell started with
        # SIGINT ignored (a background job of a non-interactive shell, as a CI
        # runner may be) cannot trap it, and Ctrl-C is what this test sends.
        self.proc = subprocess.Popen([str(SCRIPT)], env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=str(REPO_ROOT),
                                     preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                      signal.SIG_DFL))
        deadline = time.monotonic() + 120
        while "surge is running" not in self.output():
            if self.proc.poll() is not None:
                pytest.fail(f"run-local.sh exited with {self.proc.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"run-local.sh not ready within 120 s:\n{self.output()}")
            time.sleep(0.2)

    def output(self):
        return self.out_path.read_text(errors="replace")

    def started_pids(self):
        """Every process the run started, with its start time: the script's
        descendants and the PostgreSQL postmaster (which pg_ctl detaches)."""
        pids = set(descendants(self.proc.pid))
        pm = self.data / "postgres" / "postmaster.pid"
        pm_pid = int(pm.read_text().split("\n")[0])
        pids.add(pm_pid)
        pids.update(descendants(pm_pid))
        return {pid: proc_start_time(pid) for pid in pids if proc_start_time(pid)}

    def stop(self, sig=signal.SIGINT):
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"run-local.sh still running 90 s after {sig.name}:\n{self.output()}")

    def kill_all(self, pids):
        """Cleanup when the test failed half way: the script's own cleanup
        first, then SIGKILL for whatever it left."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, st in pids.items():
            now = proc_start_time(pid)
            if now and now[0] == st[0]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def assert_all_gone(run, pids):
    deadline = time.monotonic() + 15
    while True:
        alive = {pid: st for pid, st in pids.items()
                 if (now := proc_start_time(pid)) and now[0] == st[0] and now[1] != "Z"}
        if not alive:
            break
        if time.monotonic() > deadline:
            names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:100]
                     for pid in alive}
            pytest.fail(f"still running after run-local.sh stopped: {names}\n{run.output()}")
        time.sleep(0.2)
    for name, port in run.ports.items():
        assert not port_is_open(port), f"{name} {port} still open"
    admin = run.ports["SURGE_LOCAL_ADMIN_PORT"]
    for port in (admin + 1, admin + 2):
        assert not port_is_open(port), f"worker admin port {port} still open"


def test_run_local_end_to_end(binaries):
    base = Path(tempfile.mkdtemp(prefix="surge-it-run-", dir="/tmp"))
    os.chmod(base, 0o755)  # PostgreSQL runs as `postgres` under root
    run = LocalRun(base)
    pids = {}
    try:
        run.start()
        pids = run.started_pids()
        # redis, postmaster (+ its children), api, two workers
        assert len(pids) >= 5, pids
        out = run.output()
        assert "curl" in out and "redis-cli" in out and "LLEN surge:queue:burn" in out, out
        assert (run.data / "logs").is_dir(), "logs not in the data folder"

        job_id = post_job(run.api_port, "/jobs/read", {"item_id": 4242})
        job = poll_job(run.api_port, job_id)
        assert job["status"] == "succeeded", job
        assert job["result"]["id"] == 4242 and job["result"]["name"] == "item-4242", job
        admin = run.ports["SURGE_LOCAL_ADMIN_PORT"]
        for port in (admin, admin + 1, admin + 2):
            r = http(port, "GET", "/readyz")
            assert r.status == 200, (port, r)

        assert run.stop(signal.SIGINT) == 0, run.output()
        assert_all_gone(run, pids)

        # Second run: data reused (no new seeding), the first job still known.
        run.start()
        pids = run.started_pids()
        assert "already seeded" in run.output(), run.output()
        job = poll_job(run.api_port, job_id)
        assert job["status"] == "succeeded", job
        assert run.stop(signal.SIGTERM) == 0, run.output()
        assert_all_gone(run, pids)
    finally:
        run.kill_all(pids)
        if (run.data / "postgres" / "postmaster.pid").exists():
            subprocess.run(["runuser", "-u", "postgres", "--"] * (os.geteuid() == 0)
                           + ["/usr/lib/postgresql/15/bin/pg_ctl", "-D", str(run.data / "postgres"),
                              "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_run_local_refuses_a_taken_port(binaries, tmp_path):
    run = LocalRun(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", run.ports["SURGE_LOCAL_PG_PORT"]))
        s.listen()
        r = subprocess.run([str(SCRIPT)], env=run.env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    assert r.returncode != 0, r.stdout + r.stderr
    port = run.ports["SURGE_LOCAL_PG_PORT"]
    assert f"port {port}" in r.stderr and "already taken" in r.stderr, r.stderr
    # Nothing was started, not even the folders.
    assert not run.data.exists()
    for name in ("SURGE_LOCAL_REDIS_PORT", "SURGE_LOCAL_API_PORT"):
        assert not port_is_open(run.ports[name])
