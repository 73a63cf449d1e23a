#!/usr/bin/env python3
"""make bench: surge's throughput, latency and memory, each figure next to a
ceiling measured in the same run on the same machine (docs/performance.md).

Starts its own Redis and PostgreSQL in a folder under /tmp, the release
binaries as children, and load tools that target 127.0.0.1 only, for a time
bounded by --duration. Prints a progress line per step and one table, also
written as JSON (--out). Whatever happens (failure, Ctrl-C, SIGTERM) every
server it started is stopped and its folder removed.
"""

import argparse
import calendar
import json
import os
import random
import re
import resource
import selectors
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (LOOPBACK, REPO_ROOT, BenchError, Cleanup, PostgresServer,  # noqa: E402
                      RedisServer, Resp, SurgeProcess, clean_env, dump_json, free_port,
                      http_call, http_request_bytes, install_signal_handlers, machine_info,
                      make_workdir, metric_sum, read_http_response, read_rss_kib, require,
                      run_tool, say, stale_cleanup, summary, wait_until)

BENCH_DIR = Path(__file__).resolve().parent
KEY_PREFIX = "surge:"
CONNECTIONS = 64          # wrk and redis-benchmark
PG_CONNECTIONS = 8        # pgbench clients = 2 workers x 4
WORKERS = 2
READ_CONCURRENCY = 4      # reads at once per worker: its PostgreSQL connections
BURN_CONCURRENCY = 1      # burns at once per worker
WORKER_ENV = {"SURGE_WORKER_READ_CONCURRENCY": READ_CONCURRENCY,
              "SURGE_WORKER_BURN_CONCURRENCY": BURN_CONCURRENCY}
KEEPALIVE_CONNECTIONS = 1000
BURN_SECONDS = 3


def queue_key(job_type):
    """The queue of a job type, as common/job.c names it."""
    return f"{KEY_PREFIX}queue:{job_type}"

TARGETS = {
    "post_vs_healthz": (">=", 0.60),
    "post_vs_lpush": (">=", 0.50),
    "read_vs_pgbench": (">=", 0.50),
    "read_cpu_us": ("<=", 90.0),
    "e2e_p99_ms": ("<=", 10.0),
    "burn_cpu_ratio": ("between", (0.97, 1.02)),
    "rss_api_mib": ("<=", 16.0),
    "rss_worker_mib": ("<=", 16.0),
}


# --------------------------------------------------------------------------
# CPU accounting: who used the two cores during a measurement


# The parties that do the work of an operation: surge, its two servers, and
# the load tool (wrk, redis-benchmark, pgbench: the client side of a ceiling).
PARTIES = ("api", "workers", "redis", "postgres", "tool")


class CpuMeter:
    """Snapshots of CPU seconds used by our servers, by the load tool (the
    children we waited for), and by the whole machine."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self):
        self.groups = {}  # name -> function returning [(pid, include_children)]

    def add(self, name, pids_fn):
        self.groups[name] = pids_fn

    @classmethod
    def _proc_cpu(cls, pid, children):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        # fields[0] is state (field 3); utime is field 14 -> index 11
        t = int(fields[11]) + int(fields[12])
        if children:
            t += int(fields[13]) + int(fields[14])
        return t / cls.TICK

    @staticmethod
    def _machine():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return (sum(v[:8]) - idle) / CpuMeter.TICK

    def snap(self):
        s = {"t": time.monotonic(), "machine": self._machine()}
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        s["tool"] = ru.ru_utime + ru.ru_stime
        me = resource.getrusage(resource.RUSAGE_SELF)
        s["bench"] = me.ru_utime + me.ru_stime
        for name, fn in self.groups.items():
            s[name] = sum(self._proc_cpu(pid, ch) for pid, ch in fn())
        return s

    @staticmethod
    def seconds(a, b):
        """CPU seconds used between two snapshots, by group."""
        return {k: b[k] - a[k] for k in a if k not in ("t", "machine")}

    @staticmethod
    def cores(a, b):
        """Average cores used between two snapshots, by group."""
        dt = b["t"] - a["t"]
        if dt <= 0:
            return {}
        out = {k: round((b[k] - a[k]) / dt, 2) for k in a if k != "t"}
        ours = sum(v for k, v in out.items() if k not in ("machine",))
        out["other"] = round(max(0.0, out["machine"] - ours), 2)
        return out


def postgres_pids(pg):
    """The postmaster (with its exited children) and its live backends."""
    try:
        master = int((pg.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [(master, True)]
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master:
            pids.append((int(d), False))
    return pids


# --------------------------------------------------------------------------
# load tools


def wrk(url, duration, script=None, connections=CONNECTIONS, threads=2):
    cmd = [require("wrk"), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(script)]
    cmd.append(url)
    out = run_tool(cmd, duration + 30, "wrk")
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise BenchError(f"no Requests/sec in wrk's output:\n{out}")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_bad = int(bad.group(1)) if bad else 0
    n_err = sum(int(x) for x in errs.groups()) if errs else 0
    total = re.search(r"(\d+) requests in", out)
    if n_bad or n_err:
        raise BenchError(f"wrk {url}: {n_bad} non-2xx answers, {n_err} socket errors "
                         f"of {total.group(1) if total else '?'} requests:\n{out}")
    lat = re.search(r"Latency\s+(\S+)\s+(\S+)\s+(\S+)", out)
    return float(m.group(1)), (lat.group(1) if lat else "?")


def redis_benchmark_lpush(port, n):
    out = run_tool([require("redis-benchmark"), "-h", LOOPBACK, "-p", str(port),
                    "-c", str(CONNECTIONS), "-P", "1", "-n", str(n), "-t", "lpush", "--csv"],
                   120, "redis-benchmark")
    for line in out.splitlines():
        cols = [c.strip('"') for c in line.split(",")]
        if cols and cols[0].upper().startswith("LPUSH"):
            return float(cols[1])
    raise BenchError(f"no LPUSH line in redis-benchmark's output:\n{out}")


def pgbench(pg, duration):
    """(transactions per second, transactions made)."""
    out = run_tool([require("pgbench"), "-h", LOOPBACK, "-p", str(pg.port), "-U", "surge", "-n",
                    "-M", "prepared", "-c", str(PG_CONNECTIONS), "-j", "2", "-T", str(duration),
                    "-f", str(BENCH_DIR / "pgbench_read.sql"), "surge"],
                   duration + 60, "pgbench")
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    n = re.search(r"number of transactions actually processed: (\d+)", out)
    if not m or not n:
        raise BenchError(f"no tps or transaction count in pgbench's output:\n{out}")
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed and int(failed.group(1)):
        raise BenchError(f"pgbench: {failed.group(1)} failed transactions:\n{out}")
    return float(m.group(1)), int(n.group(1))


# --------------------------------------------------------------------------
# read jobs put straight on the queue, the way the api does it but many at once

FILL_SCRIPT = """
local n = tonumber(ARGV[3])
local off = tonumber(ARGV[5])
for i = 1, n do
  local id = ARGV[2] .. string.format('%010d', i)
  local item = (i * 7919 + off) % 100000 + 1
  redis.call('HSET', ARGV[1] .. 'job:' .. id, 'type', 'read',
             'params', '{"item_id":' .. item .. '}', 'status', 'queued',
             'attempts', '0', 'created_at', ARGV[4])
  redis.call('LPUSH', KEYS[1], id)
end
return n
"""


def iso_seconds(text):
    """Seconds since the epoch of the api's timestamps (2026-11-25T19:42:03.123Z)."""
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + int(text[20:23]) / 1000


def iso_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


class Bench:
    def __init__(self, args, cleanup):
        self.args = args
        self.cleanup = cleanup
        self.results = {}
        self.cpu = {}
        self.cpu_per_op = {}  # step -> [{party: CPU microseconds per operation}] per run
        self.notes = []
        self.meter = CpuMeter()
        self.workers = []
        self.api = None
        self.fill_round = 0

    # ---- set-up

    def surge_env(self, **extra):
        env = clean_env()
        env.update({
            "SURGE_REDIS_URL": self.redis.url,
            "SURGE_PG_DSN": self.pg.dsn,
            "SURGE_BIND_ADDRESS": LOOPBACK,
            "SURGE_HTTP_PORT": str(free_port()),
            "SURGE_ADMIN_PORT": str(free_port()),
            "SURGE_LOG_LEVEL": "warn",
            "SURGE_LOG_FORMAT": "text",
            "SURGE_SHUTDOWN_GRACE_SECONDS": "5",
            "SURGE_KEY_PREFIX": KEY_PREFIX,
        })
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def setup(self):
        self.work = make_workdir(self.cleanup, keep=self.args.keep)
        say(f"work folder {self.work}")
        say("starting redis-server")
        self.redis = RedisServer(self.work / "redis", self.cleanup).start()
        say("starting PostgreSQL 15 (initdb, 100 000 items from db/seed.sql)")
        self.pg = PostgresServer(self.work, self.cleanup).start()
        self.meter.add("redis", lambda: [(self.redis.proc.pid, False)])
        self.meter.add("postgres", lambda: postgres_pids(self.pg))
        say("starting surge-api")
        self.api = SurgeProcess("surge-api", self.args.bin_dir, self.surge_env(), self.work,
                                self.cleanup).start()
        self.api.wait_ready()
        self.meter.add("api", lambda: [(self.api.pid, False)] if self.api else [])
        self.meter.add("workers", lambda: [(w.pid, False) for w in self.workers])

    def start_workers(self):
        for i in range(WORKERS):
            say(f"starting surge-worker {i + 1} (read concurrency {READ_CONCURRENCY}, "
                f"burn concurrency {BURN_CONCURRENCY})")
            w = SurgeProcess(f"surge-worker#{i + 1}", self.args.bin_dir,
                             self.surge_env(**WORKER_ENV, SURGE_RESULT_TTL_SECONDS=3600),
                             self.work, self.cleanup).start()
            self.workers.append(w)
        for w in self.workers:
            w.wait_ready()
        # /readyz is 200 with one PostgreSQL connection; wait for all of them.
        time.sleep(0.5)

    def flush(self):
        self.redis.cmd("FLUSHDB")

    def measure(self, key, fn, count=None):
        """Runs fn() and records who used the CPU meanwhile under key; with
        count (a function of fn's value: how many operations it made), also
        each party's CPU time per operation, in microseconds."""
        a = self.meter.snap()
        v = fn()
        b = self.meter.snap()
        self.cpu.setdefault(key, []).append(CpuMeter.cores(a, b))
        if count is not None:
            n = count(v)
            if n <= 0:
                raise BenchError(f"{key}: no operation counted, no CPU time per operation")
            self.cpu_per_op.setdefault(key, []).append(
                {k: used / n * 1e6 for k, used in CpuMeter.seconds(a, b).items()})
        return v

    # ---- HTTP: POST /jobs against GET /healthz and LPUSH

    def step_http(self):
        d = self.args.duration
        api_url = f"http://{LOOPBACK}:{self.api.http_port}/jobs"
        health_url = f"http://{LOOPBACK}:{self.api.admin_port}/healthz"
        post_lua = BENCH_DIR / "post_job.lua"
        say("warming up: 1 s of GET /healthz and of POST /jobs")
        wrk(health_url, 1)
        wrk(api_url, 1, post_lua)
        self.flush()
        say("calibrating redis-benchmark (LPUSH, 20 000 requests)")
        lpush_rate = redis_benchmark_lpush(self.redis.port, 20000)
        self.redis.cmd("DEL", "mylist")
        healthz, post, lpush = [], [], []
        for r in range(self.args.runs):
            tag = f"[{r + 1}/{self.args.runs}]"
            v, lat = self.measure("healthz", lambda: wrk(health_url, d))
            healthz.append(v)
            say(f"{tag} GET /healthz  wrk -t2 -c{CONNECTIONS} -d{d}s: {v:,.0f} req/s (mean latency {lat})")
            v, lat = self.measure("post", lambda: wrk(api_url, d, post_lua),
                                  count=lambda _: self.redis.cmd("LLEN", queue_key("read")))
            post.append(v)
            queued = self.redis.cmd("LLEN", queue_key("read"))
            say(f"{tag} POST /jobs    wrk -t2 -c{CONNECTIONS} -d{d}s: {v:,.0f} req/s (mean latency {lat}; {queued} jobs queued)")
            self.flush()
            n = max(20000, min(2000000, int(lpush_rate * d)))
            v = self.measure("lpush", lambda: redis_benchmark_lpush(self.redis.port, n),
                             count=lambda _: n)
            lpush_rate = v
            lpush.append(v)
            say(f"{tag} LPUSH         redis-benchmark -c{CONNECTIONS} -P1 -n{n}: {v:,.0f} req/s")
            self.redis.cmd("DEL", "mylist")
        self.results["healthz_rps"] = summary(healthz)
        self.results["post_rps"] = summary(post)
        self.results["lpush_rps"] = summary(lpush)
        self.results["post_vs_healthz"] = summary([p / h for p, h in zip(post, healthz)])
        self.results["post_vs_lpush"] = summary([p / q for p, q in zip(post, lpush)])

    # ---- RSS of the api holding 1 000 keep-alive connections

    def step_rss_api(self):
        rss = []
        body = '{"type":"read","params":{"item_id":1}}'
        req = http_request_bytes("POST", "/jobs", body)
        for r in range(self.args.runs):
            socks = []
            try:
                for _ in range(KEEPALIVE_CONNECTIONS):
                    s = socket.create_connection((LOOPBACK, self.api.http_port), timeout=10)
                    socks.append(s)
                    s.sendall(req)
                    f = s.makefile("rb")
                    status, _ = read_http_response(f)
                    f.close()
                    if status != 202:
                        raise BenchError(f"POST /jobs answered {status} on connection {len(socks)}")
                time.sleep(0.2)
                open_now = metric_sum(self.api.metrics(), "surge_http_requests_total")
                kib = read_rss_kib(self.api.pid)
                rss.append(kib / 1024)
                say(f"[{r + 1}/{self.args.runs}] surge-api with {len(socks)} open keep-alive "
                    f"connections: VmRSS {kib / 1024:.1f} MiB ({open_now:.0f} requests answered so far)")
            finally:
                for s in socks:
                    s.close()
            time.sleep(0.5)
            self.flush()
        self.results["rss_api_mib"] = summary(rss)

    # ---- read jobs against pgbench

    def fill(self, n):
        self.fill_round += 1
        prefix = f"0BENCH{self.fill_round:010d}"
        self.redis.cmd("EVAL", FILL_SCRIPT, 1, queue_key("read"), KEY_PREFIX, prefix, n,
                       iso_now(), self.fill_round * 37)

    def finished(self):
        ok = bad = 0
        for w in self.workers:
            m = w.metrics()
            ok += metric_sum(m, "surge_jobs_finished_total", type="read", outcome="succeeded")
            bad += metric_sum(m, "surge_jobs_finished_total", type="read") - \
                metric_sum(m, "surge_jobs_finished_total", type="read", outcome="succeeded")
        return ok, bad

    def drain(self, n, rss_samples=None):
        """Puts n read jobs on the queue at once; returns jobs/s until the
        workers have finished them all. rss_samples gets the workers' VmRSS
        (MiB) seen meanwhile."""
        if rss_samples is None:
            rss_samples = []
        ok0, bad0 = self.finished()
        self.fill(n)
        t0 = time.monotonic()
        deadline = t0 + max(60, 10 * self.args.duration)
        while True:
            time.sleep(0.05)
            ok, bad = self.finished()
            now = time.monotonic()
            for w in self.workers:
                rss_samples.append(w.rss_kib() / 1024)
            if bad > bad0:
                raise BenchError(f"{bad - bad0} read jobs did not succeed; see {self.work}/surge-worker-*.log")
            if ok - ok0 >= n:
                break
            for w in self.workers:
                w.check_alive()
            if now > deadline:
                raise BenchError(f"only {ok - ok0} of {n} read jobs finished in {now - t0:.0f} s")
        left = self.redis.cmd("LLEN", queue_key("read"))
        if left:
            raise BenchError(f"{left} ids still queued after the drain")
        return n / (now - t0)

    def step_read(self):
        d = self.args.duration
        say("warming up: 1 000 read jobs")
        rate = self.drain(1000)
        pgb, reads, rss = [], [], []
        for r in range(self.args.runs):
            tag = f"[{r + 1}/{self.args.runs}]"
            v, _ = self.measure("pgbench", lambda: pgbench(self.pg, d), count=lambda r: r[1])
            pgb.append(v)
            say(f"{tag} pgbench -M prepared -c{PG_CONNECTIONS} -T{d} select by id: {v:,.0f} tps")
            n = max(2000, min(500000, int(rate * d)))
            samples = []
            v = self.measure("read", lambda: self.drain(n, samples), count=lambda _: n)
            rate = v
            reads.append(v)
            rss.append(max(samples))
            say(f"{tag} {n} read jobs drained by {WORKERS} workers x {READ_CONCURRENCY}: "
                f"{v:,.0f} jobs/s (worker VmRSS up to {max(samples):.1f} MiB)")
        self.results["pgbench_tps"] = summary(pgb)
        self.results["read_jobs_per_s"] = summary(reads)
        self.results["read_vs_pgbench"] = summary([a / b for a, b in zip(reads, pgb)])
        # CPU of every party per read job (the load is made inside Redis),
        # and per pgbench transaction (PostgreSQL and pgbench).
        for key, step in (("read_cpu_us", "read"), ("pgbench_cpu_us", "pgbench")):
            self.results[key] = summary(
                [sum(r[k] for k in PARTIES) for r in self.cpu_per_op[step]])
        # Per run: the largest RSS a worker reached while draining.
        self.results["rss_worker_mib"] = summary(rss)

    # ---- read jobs while a burn runs: both queues in use

    def job_state(self, job_id):
        s, b = http_call(self.api.http_port, "GET", f"/jobs/{job_id}")
        if s != 200:
            raise BenchError(f"GET /jobs/{job_id} answered {s}: {b}")
        return json.loads(b)

    def step_read_burning(self):
        """The read drain again, while a burn job posted through the api (so
        it goes through the burn queue) holds one worker's burn slot and one
        of the two cores: both queues and both kinds of work in use at once.
        The burn must run from before the drain to after it."""
        d = self.args.duration
        rate = 0.5 * (self.results.get("read_jobs_per_s") or {}).get("median", 2000)
        burn_s = 3 * d
        reads = []
        for r in range(self.args.runs):
            tag = f"[{r + 1}/{self.args.runs}]"
            status, body = http_call(self.api.http_port, "POST", "/jobs/burn",
                                     json.dumps({"seconds": burn_s}))
            if status != 202:
                raise BenchError(f"POST /jobs/burn answered {status}: {body}")
            burn = json.loads(body)["id"]
            wait_until(lambda: self.job_state(burn)["status"] == "running", 30,
                       f"burn job {burn} to run", interval=0.05)
            n = max(1000, min(500000, int(rate * d)))
            t0 = time.time()
            v = self.measure("read+burn", lambda: self.drain(n))
            t1 = time.time()
            job = self.job_state(burn)
            if job["status"] != "running" or iso_seconds(job["started_at"]) > t0:
                raise BenchError(f"{tag} the burn did not run from the start of the drain to its "
                                 f"end ({t1 - t0:.1f} s): {job}")
            rate = v
            reads.append(v)
            say(f"{tag} {n} read jobs drained by {WORKERS} workers x {READ_CONCURRENCY} in "
                f"{t1 - t0:.1f} s while a burn of {burn_s} s ran: {v:,.0f} jobs/s")
            wait_until(lambda: self.job_state(burn)["status"] == "succeeded",
                       burn_s * 3 + 60, f"burn job {burn} to finish", interval=0.2)
        self.results["read_burning_jobs_per_s"] = summary(reads)
        pgb = (self.results.get("pgbench_tps") or {}).get("median")
        if pgb:
            self.results["read_burning_vs_pgbench"] = summary([v / pgb for v in reads])

    # ---- end-to-end latency of read jobs at half the drain rate

    def step_e2e(self):
        rate = self.args.e2e_rate or 0.5 * self.results.get("read_jobs_per_s", {}).get("median", 0)
        if not rate:
            raise BenchError("the latency run needs --e2e-rate or the read step")
        d = self.args.duration
        self.redis.cmd("CONFIG", "SET", "notify-keyspace-events", "Kg")
        p50, p99, achieved = [], [], []
        try:
            for r in range(self.args.runs):
                res = self.measure("e2e", lambda: e2e_run(self.api.http_port, self.redis.port,
                                                          rate, d))
                p50.append(res["p50_ms"])
                p99.append(res["p99_ms"])
                achieved.append(res["rate"])
                say(f"[{r + 1}/{self.args.runs}] end to end at {res['rate']:,.0f} jobs/s "
                    f"({res['n']} jobs; p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, "
                    f"max {res['max_ms']:.1f} ms, {res['connections']} connections)")
        finally:
            self.redis.cmd("CONFIG", "SET", "notify-keyspace-events", "")
        self.results["e2e_rate"] = summary(achieved)
        self.results["e2e_p50_ms"] = summary(p50)
        self.results["e2e_p99_ms"] = summary(p99)

    # ---- instructions per POST and per read job, counted by callgrind

    def callgrind_post(self, out_file, seconds=5):
        """A surge-api of its own under callgrind, loaded with POST /jobs
        (wrk -c16) for `seconds` after a warm-up; returns (instructions per
        POST, the callgrind file of that window)."""
        env = self.surge_env()
        api = SurgeProcess("surge-api#callgrind", self.args.bin_dir, env, self.work, self.cleanup)
        api.start(wrapper=callgrind_wrapper(out_file))
        try:
            api.wait_ready(120)
            url = f"http://{LOOPBACK}:{api.http_port}/jobs"
            post_lua = BENCH_DIR / "post_job.lua"
            wrk(url, 1, post_lua, connections=16)

            def accepted():
                return metric_sum(api.metrics(), "surge_http_requests_total", code="202")
            n0 = accepted()
            part = callgrind_window(api.pid, out_file,
                                    lambda: wrk(url, seconds, post_lua, connections=16))
            n = accepted() - n0
        finally:
            api.stop(120)
            self.flush()
        if n <= 0:
            raise BenchError("callgrind: no POST /jobs was accepted")
        return callgrind_total(part) / n, part

    def callgrind_read(self, out_file, jobs=3000):
        """One surge-worker under callgrind, alone, draining `jobs` read jobs
        after a warm-up of 500; returns (instructions per read job, the
        callgrind file of that window). The other workers are stopped."""
        for w in self.workers:
            w.stop()
        env = self.surge_env(**WORKER_ENV, SURGE_RESULT_TTL_SECONDS=3600)
        w = SurgeProcess("surge-worker#callgrind", self.args.bin_dir, env, self.work,
                         self.cleanup)
        w.start(wrapper=callgrind_wrapper(out_file))
        self.workers = [w]
        try:
            w.wait_ready(120)
            self.drain(500)
            part = callgrind_window(w.pid, out_file, lambda: self.drain(jobs))
        finally:
            self.workers = []
            w.stop(120)
        return callgrind_total(part) / jobs, part

    def step_callgrind(self):
        cg = self.work / "callgrind"
        cg.mkdir(exist_ok=True)
        say("callgrind: instructions per POST /jobs (a surge-api under callgrind, wrk -c16, 5 s)")
        per_post, _ = self.callgrind_post(cg / "api-post.out")
        say(f"  {per_post:,.0f} instructions per POST /jobs")
        say("callgrind: instructions per read job (one surge-worker under callgrind, 3 000 jobs)")
        per_read, _ = self.callgrind_read(cg / "worker-read.out")
        say(f"  {per_read:,.0f} instructions per read job")
        self.results["post_instructions"] = per_post
        self.results["read_instructions"] = per_read

    # ---- burn: CPU seconds used for the seconds asked

    def step_burn(self):
        ratios, walls = [], []
        for r in range(self.args.runs):
            status, body = http_call(self.api.http_port, "POST", "/jobs/burn",
                                     json.dumps({"seconds": BURN_SECONDS}))
            if status != 202:
                raise BenchError(f"POST /jobs/burn answered {status}: {body}")
            job_id = json.loads(body)["id"]

            def done():
                s, b = http_call(self.api.http_port, "GET", f"/jobs/{job_id}")
                j = json.loads(b)
                if j.get("status") in ("failed", "dead"):
                    raise BenchError(f"burn job {job_id} {j['status']}: {j.get('error')}")
                return j if j.get("status") == "succeeded" else None
            job = self.measure("burn", lambda: wait_until(done, BURN_SECONDS + 30,
                                                          f"burn job {job_id}", interval=0.1))
            res = job["result"]
            ratios.append(res["cpu_seconds"] / BURN_SECONDS)
            walls.append(res["wall_seconds"] / BURN_SECONDS)
            say(f"[{r + 1}/{self.args.runs}] burn {BURN_SECONDS} s: cpu {res['cpu_seconds']:.3f} s, "
                f"wall {res['wall_seconds']:.3f} s")
        self.results["burn_cpu_ratio"] = summary(ratios)
        self.results["burn_wall_ratio"] = summary(walls)

    # ---- image

    def step_image(self):
        image = self.args.image
        size = None
        if not image:
            self.results["image"] = {"name": None, "size_bytes": None, "text": "not built"}
            return
        try:
            r = subprocess.run(["bash", "-c", '. scripts/podman-env.sh && podman image inspect '
                                '--format "{{.Size}}" "$0"', image],
                               capture_output=True, text=True, timeout=60, cwd=str(REPO_ROOT),
                               stdin=subprocess.DEVNULL)
            if r.returncode == 0 and r.stdout.strip().isdigit():
                size = int(r.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
        text = f"{size / 1e6:.1f} MB ({size / 1048576:.1f} MiB)" if size else "not built"
        self.results["image"] = {"name": image, "size_bytes": size, "text": text}
        say(f"image {image}: {text}")


# --------------------------------------------------------------------------
# end-to-end latency: open-loop POSTs at a fixed rate on a pool of keep-alive
# connections, result visibility from Redis keyspace notifications (the
# outcome script's EXPIRE is its last command). One thread, non-blocking
# sockets and selectors: the load generator must cost the two cores little.

_PMSG = re.compile(rb"job:([0-9A-Z]{26})\r\n\$6\r\nexpire\r\n")
_STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(?:[^\r]+\r\n)*?[Cc]ontent-[Ll]ength: *(\d+)\r\n(?:[^\r]+\r\n)*\r\n")


def e2e_run(api_port, redis_port, rate, duration, max_conns=256):
    clock = time.perf_counter
    sel = selectors.DefaultSelector()
    sub = socket.create_connection((LOOPBACK, redis_port), timeout=10)
    sub.sendall(Resp.encode("PSUBSCRIBE", f"__keyspace@0__:{KEY_PREFIX}job:*"))
    sub.recv(4096)  # the subscription's confirmation
    sub.setblocking(False)
    sel.register(sub, selectors.EVENT_READ, None)
    visible, sent, errors = {}, {}, []
    idle, conns = [], []
    sub_buf = b""
    rnd = random.Random(7)

    class Conn:
        __slots__ = ("sock", "buf", "t")

    def new_conn():
        c = Conn()
        c.sock = socket.create_connection((LOOPBACK, api_port), timeout=10)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock.setblocking(False)
        c.buf = b""
        c.t = 0.0
        sel.register(c.sock, selectors.EVENT_READ, c)
        conns.append(c)
        return c

    n = max(10, int(rate * duration))
    t0 = clock() + 0.05
    i = 0
    outstanding = 0
    deadline = t0 + duration + 30
    while True:
        now = clock()
        while i < n and t0 + i / rate <= now:
            if idle:
                c = idle.pop()
            elif len(conns) < max_conns:
                c = new_conn()
            else:
                break  # every connection busy: send when one comes back
            body = b'{"type":"read","params":{"item_id":%d}}' % rnd.randint(1, 100000)
            c.t = clock()
            c.sock.send(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                        b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            outstanding += 1
            i += 1
        if i >= n and outstanding == 0 and len(visible) >= len(sent):
            if all(k in visible for k in sent):
                break
        if now > deadline:
            break
        timeout = max(0.0, t0 + i / rate - clock()) if i < n and (idle or len(conns) < max_conns) else 0.05
        for key, _ in sel.select(timeout):
            if key.data is None:
                try:
                    data = sub.recv(262144)
                except BlockingIOError:
                    continue
                if not data:
                    raise BenchError("redis closed the subscription")
                t = clock()
                sub_buf += data
                last = 0
                for m in _PMSG.finditer(sub_buf):
                    visible.setdefault(m.group(1).decode(), t)
                    last = m.end()
                sub_buf = sub_buf[last:] if last else sub_buf[-4096:]
                continue
            c = key.data
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                raise BenchError("surge-api closed a connection during the latency run")
            c.buf += data
            m = _STATUS.match(c.buf)
            if not m or len(c.buf) < m.end() + int(m.group(2)):
                continue
            body = c.buf[m.end():m.end() + int(m.group(2))]
            c.buf = c.buf[m.end() + int(m.group(2)):]
            outstanding -= 1
            if m.group(1) != b"202":
                errors.append(int(m.group(1)))
            else:
                sent[body[7:33].decode()] = c.t
            idle.append(c)
    t_end = t0 + (i - 1) / rate
    sel.close()
    sub.close()
    for c in conns:
        c.sock.close()
    if errors:
        raise BenchError(f"{len(errors)} POST /jobs failed during the latency run: {errors[:5]}")
    missing = [k for k in sent if k not in visible]
    if missing or i < n:
        raise BenchError(f"latency run: {i} of {n} jobs sent, {len(missing)} never finished")
    lat = sorted((visible[k] - t) * 1000 for k, t in sent.items())

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100 * (len(lat) - 1))))]
    return {"n": len(lat), "rate": n / max(1e-9, t_end - t0), "p50_ms": pct(50),
            "p99_ms": pct(99), "max_ms": lat[-1], "mean_ms": statistics.fmean(lat),
            "connections": len(conns)}


# --------------------------------------------------------------------------
# callgrind: instructions executed in a window of a process's life


def callgrind_wrapper(out_file):
    return [require("valgrind"), "--tool=callgrind", f"--callgrind-out-file={out_file}"]


def callgrind_window(pid, out_file, fn):
    """Zeroes the counters of a process run under callgrind, runs fn(), then
    has callgrind dump what was counted meanwhile; returns that dump's path
    (out_file.N: start-up and shutdown are not in it)."""
    require("callgrind_control")
    before = set(Path(out_file).parent.glob(Path(out_file).name + ".*"))
    run_tool(["callgrind_control", "-z", str(pid)], 60, "callgrind_control -z")
    fn()
    run_tool(["callgrind_control", "-d", str(pid)], 60, "callgrind_control -d")
    new = set(Path(out_file).parent.glob(Path(out_file).name + ".*")) - before
    if len(new) != 1:
        raise BenchError(f"callgrind: expected one new dump next to {out_file}, found {len(new)}")
    return new.pop()


def callgrind_total(path):
    """Instructions (Ir) in a callgrind dump: its `summary:` line."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("summary:"):
            return int(line.split()[1])
    raise BenchError(f"callgrind: no summary line in {path}")


# --------------------------------------------------------------------------
# the table


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        s = f"{v:,.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit


def rng(s, unit="", pct=False):
    if not s or s.get("median") is None:
        return "-"
    if pct:
        return f"{s['median'] * 100:.0f}% ({s['min'] * 100:.0f}–{s['max'] * 100:.0f})"
    return f"{fmt(s['median'], unit)} ({fmt(s['min'])}–{fmt(s['max'])})"


def verdict(key, s):
    if key not in TARGETS or not s or s.get("median") is None:
        return None
    op, t = TARGETS[key]
    v = s["median"]
    if op == ">=":
        return v >= t
    if op == "<=":
        return v <= t
    return t[0] <= v <= t[1]


def rows(res):
    """(figure, value, ceiling, ratio, target, met) for the table."""
    out = []

    def mark(key):
        ok = verdict(key, res.get(key))
        return "-" if ok is None else ("yes" if ok else "NO")

    out.append(("POST /jobs req/s (wrk, 64 conn)", rng(res.get("post_rps")),
                "GET /healthz " + rng(res.get("healthz_rps")),
                rng(res.get("post_vs_healthz"), pct=True), ">= 60%", mark("post_vs_healthz")))
    out.append(("POST /jobs req/s (same runs)", rng(res.get("post_rps")),
                "LPUSH " + rng(res.get("lpush_rps")),
                rng(res.get("post_vs_lpush"), pct=True), ">= 50%", mark("post_vs_lpush")))
    out.append(("read jobs/s (2 workers x 4 PG conn)", rng(res.get("read_jobs_per_s")),
                "pgbench " + rng(res.get("pgbench_tps")),
                rng(res.get("read_vs_pgbench"), pct=True), ">= 50%", mark("read_vs_pgbench")))
    out.append(("read jobs/s while a burn runs (1 core)", rng(res.get("read_burning_jobs_per_s")),
                "pgbench " + rng(res.get("pgbench_tps")),
                rng(res.get("read_burning_vs_pgbench"), pct=True), "printed", "-"))
    b = res.get("burn_cpu_ratio")
    out.append(("burn: CPU s used / s asked", rng(b), "1.0", rng(b),
                "0.97–1.02", mark("burn_cpu_ratio")))
    e = res.get("e2e_rate")
    out.append(("read job end to end p50 (ms)", rng(res.get("e2e_p50_ms")),
                f"at {fmt(e['median'] if e else None)} jobs/s", "-", "printed", "-"))
    out.append(("read job end to end p99 (ms)", rng(res.get("e2e_p99_ms")),
                f"at {fmt(e['median'] if e else None)} jobs/s", "-", "<= 10", mark("e2e_p99_ms")))
    out.append(("CPU per read job, all parties (µs)", rng(res.get("read_cpu_us")),
                "pgbench " + rng(res.get("pgbench_cpu_us")) + " per transaction", "-", "<= 90",
                mark("read_cpu_us")))
    for key, what in (("post_instructions", "POST /jobs, surge-api"),
                      ("read_instructions", "read job, surge-worker")):
        out.append((f"instructions per {what} (callgrind)", fmt(res.get(key)), "-", "-",
                    "printed", "-"))
    out.append(("RSS surge-api, 1000 keep-alive conn (MiB)", rng(res.get("rss_api_mib")), "-", "-",
                "<= 16", mark("rss_api_mib")))
    out.append(("RSS surge-worker at full load (MiB)", rng(res.get("rss_worker_mib")), "-", "-",
                "<= 16", mark("rss_worker_mib")))
    img = res.get("image") or {}
    out.append((f"runtime image size ({img.get('name') or 'surge'})", img.get("text", "not built"),
                "-", "-", "printed", "-"))
    return out


def render_table(res):
    head = ("figure", "median (min–max)", "ceiling, same run", "ratio", "target", "met")
    body = rows(res)
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *map(line, body)])


def render_cpu(cpu):
    lines = ["cores used during each measurement (median of runs):"]
    names = ["api", "workers", "redis", "postgres", "tool", "bench", "other", "machine"]
    lines.append("  " + "step".ljust(9) + "".join(n.rjust(10) for n in names))
    for step, runs in cpu.items():
        med = {n: statistics.median(r.get(n, 0) for r in runs) for n in names}
        lines.append("  " + step.ljust(9) + "".join(f"{med[n]:10.2f}" for n in names))
    return "\n".join(lines)


def render_cpu_per_op(per_op):
    lines = ["CPU time per operation, microseconds (median of runs):"]
    lines.append("  " + "operation".ljust(10) + "".join(n.rjust(10) for n in PARTIES)
                 + "all".rjust(10))
    for step, runs in per_op.items():
        med = {n: statistics.median(r.get(n, 0) for r in runs) for n in PARTIES}
        total = statistics.median(sum(r.get(n, 0) for n in PARTIES) for r in runs)
        lines.append("  " + step.ljust(10) + "".join(f"{med[n]:10.1f}" for n in PARTIES)
                     + f"{total:10.1f}")
    return "\n".join(lines)


def git_commit():
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=str(REPO_ROOT), timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "api", "common", "worker"],
                               capture_output=True, text=True, cwd=str(REPO_ROOT), timeout=10)
        return r.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


STEPS = ("http", "rss", "read", "readburn", "e2e", "burn", "callgrind")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=str(REPO_ROOT / "build" / "release"))
    ap.add_argument("--out", default=str(REPO_ROOT / "build" / "bench" / "results.json"))
    ap.add_argument("--runs", type=int, default=3, help="runs of each figure (at least 3)")
    ap.add_argument("--duration", type=int, default=5, help="seconds of each load run")
    ap.add_argument("--image", default=os.environ.get("SURGE_BENCH_IMAGE", ""))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--only", default=",".join(STEPS),
                    help=f"steps to run, of {','.join(STEPS)} (all by default)")
    ap.add_argument("--e2e-rate", type=float, default=0,
                    help="jobs/s of the latency run (default: half the read jobs/s measured)")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3 (each figure is a median with its min and max)")
    unknown = set(args.only.split(",")) - set(STEPS)
    if unknown:
        ap.error(f"--only: unknown step(s) {', '.join(sorted(unknown))}")
    if not 1 <= args.duration <= 60:
        ap.error("--duration must be between 1 and 60 seconds")

    install_signal_handlers()
    # Every connection is a file descriptor, here and in the api (inherited).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 8192) if hard != resource.RLIM_INFINITY else 8192
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < KEEPALIVE_CONNECTIONS + 200:
        print(f"bench: the open-file limit ({hard}) is too low for {KEEPALIVE_CONNECTIONS} connections",
              file=sys.stderr)
        return 1

    info = machine_info()
    say(f"machine: {info['nproc']} CPUs, {info['cpu_model']}, {info['mem_gib']} GiB, "
        f"load average {' '.join(info['loadavg_at_start'])}")
    cleanup = Cleanup()
    bench = Bench(args, cleanup)
    started = time.time()
    status = "ok"
    try:
        stale_cleanup()
        steps = set(args.only.split(","))
        bench.setup()
        failed = []

        def step(name, fn):
            # A step that fails is reported; the others still run.
            try:
                fn()
            except BenchError as e:
                failed.append(f"{name}: {e}")
                print(f"bench: error in step {name}: {e}", file=sys.stderr)
        if "http" in steps:
            step("http", bench.step_http)
        if "rss" in steps:
            step("rss", bench.step_rss_api)
        if steps & {"read", "readburn", "e2e", "burn", "callgrind"}:
            bench.start_workers()
        if "read" in steps:
            step("read", bench.step_read)
        if "readburn" in steps:
            step("readburn", bench.step_read_burning)
        if "e2e" in steps:
            step("e2e", bench.step_e2e)
        if "burn" in steps:
            step("burn", bench.step_burn)
        if "callgrind" in steps:
            step("callgrind", bench.step_callgrind)
        if failed:
            status = "failed: " + "; ".join(failed)
    except KeyboardInterrupt:
        status = "interrupted"
        print("\nbench: interrupted; stopping the servers", file=sys.stderr)
    except BenchError as e:
        status = f"failed: {e}"
        print(f"bench: error: {e}", file=sys.stderr)
    finally:
        say("stopping servers")
        cleanup.run()
    bench.step_image()
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    res = bench.results
    verdicts = {k: verdict(k, res.get(k)) for k in TARGETS}
    out = {
        "status": status,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "commit": git_commit(),
        "machine": info,
        "settings": {"runs": args.runs, "duration_s": args.duration, "connections": CONNECTIONS,
                     "pg_connections": PG_CONNECTIONS, "workers": WORKERS,
                     "read_concurrency": READ_CONCURRENCY, "burn_concurrency": BURN_CONCURRENCY,
                     "keepalive_connections": KEEPALIVE_CONNECTIONS, "burn_seconds": BURN_SECONDS},
        "results": res,
        "targets": {k: {"op": op, "value": t} for k, (op, t) in TARGETS.items()},
        "met": verdicts,
        "cpu_cores": bench.cpu,
        "cpu_us_per_operation": bench.cpu_per_op,
    }
    dump_json(args.out, out)
    text = (f"surge bench, {out['started']}, commit {out['commit']}, {info['nproc']} x "
            f"{info['cpu_model']}, load average {' '.join(info['loadavg_at_start'])} at the start\n"
            + render_table(res) + "\n\n" + render_cpu(bench.cpu) + "\n\n"
            + render_cpu_per_op(bench.cpu_per_op) + "\n")
    Path(args.out).with_suffix(".txt").write_text(text)
    print()
    print(f"surge bench, {out['started']}, commit {out['commit']}, {info['nproc']} x "
          f"{info['cpu_model']}, load average {' '.join(info['loadavg_at_start'])} at the start")
    print(render_table(res))
    print()
    print(render_cpu(bench.cpu))
    print()
    print(render_cpu_per_op(bench.cpu_per_op))
    print(f"\nwritten to {args.out} and {Path(args.out).with_suffix('.txt')}")
    if status != "ok":
        print(f"bench: {status}", file=sys.stderr)
        return 130 if status == "interrupted" else 1
    missed = [k for k, v in verdicts.items() if v is False]
    if missed:
        print(f"targets not met: {', '.join(missed)} (see docs/performance.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
