#!/usr/bin/env python3
"""make bench-profile: where surge-api and surge-worker spend their time.

  - system calls per request (per job for a worker), counted by perf with the
    kernel's syscall tracepoints;
  - perf sampling on the cpu-clock software event (user and kernel stacks),
    which works even where the hardware counters are hidden (a VM);
  - callgrind: instructions per function in user space, exact and repeatable.

The same servers as make bench (bench.py), loads bounded in time, 127.0.0.1
only. Reports go to --out; a summary is printed.
"""

import argparse
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench as B  # noqa: E402
from benchlib import (LOOPBACK, BenchError, Cleanup, install_signal_handlers,  # noqa: E402
                      metric_sum, say)

SYSCALLS = ["epoll_ctl", "epoll_wait", "read", "write", "writev", "readv", "sendto",
            "recvfrom", "getrandom", "accept4"]


def perf_works(kind):
    if not shutil.which("perf"):
        return False
    ev = {"sample": ["record", "-q", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
          "tracepoint": ["stat", "-e", "raw_syscalls:sys_enter", "--", "true"]}[kind]
    r = subprocess.run(["perf", *ev], capture_output=True, text=True, timeout=30)
    return r.returncode == 0 and "not supported" not in r.stderr and "<not" not in r.stderr


class Attach:
    """perf attached to some pids for the length of a with-block."""

    def __init__(self, args):
        self.args = args

    def __enter__(self):
        self.proc = subprocess.Popen(["perf", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.out, self.err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.out, self.err = self.proc.communicate()


def syscall_counts(pids, fn):
    """Runs fn() while counting the syscalls of pids; returns (fn(), counts)."""
    events = ["raw_syscalls:sys_enter"] + [f"syscalls:sys_enter_{s}" for s in SYSCALLS]
    with Attach(["stat", "-x", ",", "-e", ",".join(events), "-p", ",".join(map(str, pids))]) as a:
        v = fn()
    counts = {}
    for line in a.err.splitlines():
        cols = line.split(",")
        if len(cols) > 2 and cols[0].strip().isdigit():
            name = cols[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "total")
            counts[name] = int(cols[0])
    return v, counts


def perf_record(pids, out, fn):
    with Attach(["record", "-q", "-e", "cpu-clock", "-F", "2000", "-g",
                 "-p", ",".join(map(str, pids)), "-o", str(out)]):
        v = fn()
    return v


def perf_report(data, out_txt, top=40):
    r = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
                        "--stdio", "-g", "none", "--percent-limit", "0.3"],
                       capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stdout.splitlines() if "%" in l and not l.startswith("#")]
    dso = subprocess.run(["perf", "report", "-i", str(data), "--no-children", "--sort", "dso",
                          "--stdio", "-g", "none"], capture_output=True, text=True, timeout=300)
    dlines = [l for l in dso.stdout.splitlines() if "%" in l and not l.startswith("#")]
    Path(out_txt).write_text("by library:\n" + "\n".join(dlines) + "\n\nby function:\n"
                             + "\n".join(lines) + "\n")
    return dlines[:6], lines[:top]


def callgrind_report(data, out_txt, top=40):
    # The data is a window of the run (bench.callgrind_window): the frames
    # already on the stack when the counters were zeroed (main, app_run...)
    # show the whole window as their own cost; they are left out of the rows.
    ex = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", str(data)],
                        capture_output=True, text=True, timeout=300).stdout
    inc = subprocess.run(["callgrind_annotate", "--inclusive=yes", str(data)], capture_output=True,
                         text=True, timeout=300).stdout
    Path(out_txt).write_text("self (exclusive):\n" + ex + "\n\ninclusive:\n" + inc)
    rows = []
    for line in ex.splitlines():
        m = re.match(r"^\s*[\d,]+ \(\s*([\d.]+)%\)\s+\S", line)
        if m and (float(m.group(1)) < 99.0 or "PROGRAM TOTALS" in line):
            rows.append(line)
    return rows[:top]


def per(counts, n):
    return {k: round(v / n, 2) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]) if v}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin-dir", default=str(B.REPO_ROOT / "build" / "release"))
    ap.add_argument("--out", default=str(B.REPO_ROOT / "build" / "bench" / "profile"))
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    install_signal_handlers()
    cleanup = Cleanup()

    class A:
        bin_dir = args.bin_dir
        keep = False
        runs = 3
        duration = args.seconds
        image = ""
    bench = B.Bench(A, cleanup)
    sampling, tracepoints = perf_works("sample"), perf_works("tracepoint")
    has_valgrind = shutil.which("valgrind") and shutil.which("callgrind_annotate")
    say(f"perf sampling: {'yes' if sampling else 'no'}; syscall tracepoints: "
        f"{'yes' if tracepoints else 'no'}; callgrind: {'yes' if has_valgrind else 'no'}")
    summary = []
    post_lua = B.BENCH_DIR / "post_job.lua"
    try:
        bench.setup()
        api = bench.api
        post_url = f"http://{LOOPBACK}:{api.http_port}/jobs"
        health_url = f"http://{LOOPBACK}:{api.admin_port}/healthz"

        def requests():
            return metric_sum(api.metrics(), "surge_http_requests_total")

        B.wrk(post_url, 1, post_lua)
        if tracepoints:
            for name, url, script in (("POST /jobs", post_url, post_lua),
                                      ("GET /healthz", health_url, None)):
                n0 = requests()
                _, c = syscall_counts([api.pid], lambda: B.wrk(url, args.seconds, script))
                n = requests() - n0 - 1
                summary.append(f"surge-api syscalls per {name} request ({n:.0f} requests): {per(c, n)}")
                say(summary[-1])
        if sampling:
            data = out / "api-post.perf.data"
            say(f"perf record on surge-api under POST /jobs for {args.seconds} s")
            perf_record([api.pid], data, lambda: B.wrk(post_url, args.seconds, post_lua))
            d, f = perf_report(data, out / "api-post.perf.txt")
            summary.append("surge-api under POST /jobs, perf cpu-clock samples:\n  "
                           + "\n  ".join(d + ["..."] + f[:25]))
        bench.flush()

        bench.start_workers()
        bench.drain(2000, [])
        w = bench.workers[0]

        def finished():
            return metric_sum(w.metrics(), "surge_jobs_finished_total")
        if tracepoints:
            n0 = finished()
            _, c = syscall_counts([w.pid], lambda: bench.drain(20000, []))
            n = finished() - n0
            summary.append(f"surge-worker syscalls per read job ({n:.0f} jobs): {per(c, n)}")
            say(summary[-1])
            n0 = bench.finished()[0]
            _, c = syscall_counts([bench.redis.proc.pid], lambda: bench.drain(20000, []))
            n = bench.finished()[0] - n0
            summary.append(f"redis-server syscalls per read job ({n:.0f} jobs): {per(c, n)}")
            say(summary[-1])
        if sampling:
            data = out / "worker-read.perf.data"
            rdata = out / "redis-read.perf.data"
            say("perf record on a surge-worker and on redis-server draining 30 000 read jobs")
            with Attach(["record", "-q", "-e", "cpu-clock", "-F", "2000", "-g", "-p",
                         str(bench.redis.proc.pid), "-o", str(rdata)]):
                perf_record([w.pid], data, lambda: bench.drain(30000, []))
            d, f = perf_report(data, out / "worker-read.perf.txt")
            summary.append("surge-worker draining read jobs, perf cpu-clock samples:\n  "
                           + "\n  ".join(d + ["..."] + f[:25]))
            d, f = perf_report(rdata, out / "redis-read.perf.txt")
            summary.append("redis-server while workers drain read jobs, perf cpu-clock samples:\n  "
                           + "\n  ".join(d + ["..."] + f[:25]))

        if has_valgrind:
            say("callgrind: surge-api under POST /jobs (wrk -c16) for 10 s")
            per_post, part = bench.callgrind_post(out / "api-post.callgrind.out", seconds=10)
            rows = callgrind_report(part, out / "api-post.callgrind.txt")
            summary.append(f"surge-api under POST /jobs, callgrind: {per_post:,.0f} instructions "
                           "per POST; by function (self):\n  " + "\n  ".join(rows[:25]))
            say("callgrind: one surge-worker draining 3 000 read jobs")
            per_read, part = bench.callgrind_read(out / "worker-read.callgrind.out")
            rows = callgrind_report(part, out / "worker-read.callgrind.txt")
            summary.append(f"surge-worker draining read jobs, callgrind: {per_read:,.0f} "
                           "instructions per read job; by function (self):\n  "
                           + "\n  ".join(rows[:25]))
    except KeyboardInterrupt:
        print("\nprofile: interrupted; stopping the servers", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"profile: error: {e}", file=sys.stderr)
        return 1
    finally:
        say("stopping servers")
        cleanup.run()
    text = "\n\n".join(summary) + "\n"
    (out / "summary.txt").write_text(text)
    print()
    print(text)
    print(f"reports in {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
