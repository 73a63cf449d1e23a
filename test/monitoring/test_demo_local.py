"""The demo recorder against servers this test starts: a burst of 12 burn
jobs of 2 s and 20 reads on two workers of burn concurrency 2, a third
worker joining halfway. Checks the CSV, the SVG chart, the summary and its
read latency line."""
import csv
import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import helpers
from conftest import ROOT
from surgekit import recorder, report

DEMO = ROOT / "tools/surge-demo"
SVG = "{http://www.w3.org/2000/svg}"


def test_local_recording(surge, redis, tmp_path):
    api = surge.api()
    w1 = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=2)
    w2 = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=2)
    helpers.wait_for(lambda: len(redis.lines("KEYS", "surge:worker:*")) == 2, 10, message="two heartbeats")
    out = tmp_path / "reports"
    cmd = [sys.executable, str(DEMO), "local", "--api", f"127.0.0.1:{api.http_port}", "--redis", redis.url,
           "--worker-metrics", f"127.0.0.1:{w1.admin_port},127.0.0.1:{w2.admin_port}",
           "--jobs", "12", "--burn-seconds", "2", "--reads", "20", "--interval", "0.5", "--tail", "1.5",
           "--max-seconds", "90", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.2)
    surge.worker(SURGE_WORKER_BURN_CONCURRENCY=2)  # "scales up"
    stdout, stderr = proc.communicate(timeout=150)
    assert proc.returncode == 0, stdout + stderr
    folders = list(out.iterdir())
    assert len(folders) == 1
    d = folders[0]
    assert sorted(p.name for p in d.iterdir()) == ["chart.svg", "jobs.csv", "run.json", "summary.md",
                                                   "timeline.csv"]
    assert "drained" in stdout and "jobs lost: 0" in stdout
    said = re.search(r"read latency during the burst: p50 ([\d.]+) s, p99 ([\d.]+) s, "
                     r"max ([\d.]+) s \(20 reads\)", stdout)
    assert said, stdout

    # -- the live lines: one per sample, with the figures a presenter reads out
    lines = [l for l in stdout.splitlines() if "queue" in l and "replicas" in l]
    assert len(lines) >= 8 and all("CPU" in l and "done" in l for l in lines)

    # -- CSV
    rows = report.read_csv(d / "timeline.csv")
    header = (d / "timeline.csv").read_text().splitlines()[0].split(",")
    assert header == report.COLUMNS
    ts = [r["t_seconds"] for r in rows]
    assert ts == sorted(ts) and ts[0] < 0.5
    q = [r["queue"] for r in rows]
    assert q[0] == 0, "the first sample is taken before the burst"
    peak = q.index(max(q))
    # 12 burns for 2 workers x 2 burn slots: 8 wait until the first ones end
    # (2 s) or the third worker joins; the reads, on their own queue, are
    # taken at once and need not show at all.
    assert max(q) >= 6, q
    assert q[-1] == 0 and all(x == 0 for x in q[-3:]), q
    assert rows[0]["replicas"] == 2 and rows[-1]["replicas"] == 3
    assert [r["replicas"] for r in rows] == sorted(r["replicas"] for r in rows)
    assert max(r["cpu_cores"] or 0 for r in rows) > 0.3, "burns should show as CPU"
    assert rows[-1]["done"] == rows[-1]["submitted"] == 32
    assert rows[-1]["succeeded"] == 32
    assert all(r["replicas_desired"] is None and r["cpu_request_cores"] is None for r in rows)

    # -- the queue of each type: the reads never pile up behind the burns
    assert all(r["queue"] == r["queue_read"] + r["queue_burn"] for r in rows), rows
    assert max(r["queue_burn"] for r in rows) >= 6, rows

    # -- every job, its final state as the api answered it, and Redis agrees
    with open(d / "jobs.csv", newline="") as f:
        jobs = list(csv.DictReader(f))
    assert [j["type"] for j in jobs].count("burn") == 12 and len(jobs) == 32
    assert all(j["state"] == "succeeded" and j["attempts"] == "1" for j in jobs), jobs
    for j in jobs:
        assert redis.lines("HGET", f"surge:job:{j['id']}", "status") == ["succeeded"], j
        h = redis.hgetall(f"surge:job:{j['id']}")
        took = recorder.iso_seconds(h["finished_at"]) - recorder.iso_seconds(h["created_at"])
        assert abs(float(j["latency_seconds"]) - took) <= 0.001, (j, h)
    # -- the read latency line: nearest-rank percentiles of the reads' own times
    lat = sorted(float(j["latency_seconds"]) for j in jobs if j["type"] == "read")
    assert [float(x) for x in said.groups()] == [lat[9], lat[19], lat[19]], (said.groups(), lat)

    # -- SVG
    tree = ET.parse(d / "chart.svg")
    root = tree.getroot()
    assert root.tag == f"{SVG}svg"
    series = {e.get("id"): e for e in root.iter(f"{SVG}polyline") if e.get("id")}
    assert {"series-queue", "series-replicas", "series-cpu"} <= set(series)
    values = [float(v) for v in series["series-queue"].get("data-values").split(",")]
    assert values == q
    pts = [tuple(map(float, p.split(","))) for p in series["series-queue"].get("points").split()]
    assert len(pts) == len(rows)
    ys = [y for _, y in pts]  # SVG y grows downwards
    assert ys[0] == ys[-1] == max(ys), "queue starts and ends at 0"
    assert min(ys) < ys[0] - 100, "the queue visibly rises"
    xs = [x for x, _ in pts]
    assert xs == sorted(xs)
    rep = [float(v) for v in series["series-replicas"].get("data-values").split(",")]
    assert rep[0] == 2 and rep[-1] == 3
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "Jobs waiting" in texts and "replicas" in texts and "CPU" in texts
    assert "scale-up" in texts and "drained" in texts

    # -- summary: computed from the timeline
    run = json.loads((d / "run.json").read_text())
    fig = run["figures"]
    again = report.summarize(rows, fig["accepted"], run["final_states"])
    for k in ("scale_up_t", "drain_t", "peak_replicas", "peak_queue", "lost"):
        assert again[k] == fig[k], k
    assert fig["accepted"] == 32 and fig["lost"] == 0 and fig["succeeded"] == 32
    assert fig["peak_replicas"] == 3 and fig["initial_replicas"] == 2
    assert 1.5 < fig["scale_up_t"] < 6
    assert fig["drain_t"] > rows[peak]["t_seconds"]
    # 12 burns of 2 s of CPU each on 4, then 6, slots: at least two rounds;
    # on a 2-core machine the CPU time itself is the limit (24 s of CPU).
    assert 3.5 < fig["drain_t"] < 80
    md = (d / "summary.md").read_text()
    assert "| **Jobs lost** | **0** |" in md
    assert f"| **Read latency during the burst** | **p50 {said.group(1)} s" in md
    assert f"| Peak replicas | 3 " in md
    assert "| Time to scale up | " in md and "(2 → 3 replicas)" in md
    assert "| Time to drain | " in md and "queue empty and every job finished" in md
    assert "![queue depth, replicas and CPU over time](chart.svg)" in md

    # -- the report can be redrawn from its timeline, identically
    before = (d / "chart.svg").read_text(), md
    r = subprocess.run([sys.executable, str(DEMO), "report", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ((d / "chart.svg").read_text(), (d / "summary.md").read_text()) == before


def sample(t, queue, replicas, done, **kw):
    s = {c: None for c in report.COLUMNS}
    s.update(t_seconds=t, time_utc="", queue=queue, replicas=replicas, done=done, submitted=10,
             running=0, retry=0, dead_list=0, succeeded=done, failed=0, dead=0, cpu_cores=1.0)
    s.update(kw)
    return s


def test_lost_jobs_are_counted_not_assumed():
    rows = [sample(0, 0, 2, 0), sample(1, 8, 2, 2), sample(2, 0, 4, 7), sample(3, 0, 4, 7)]
    fig = report.summarize(rows, 10, {"succeeded": 7, "failed": 0, "dead": 0, "missing": 3,
                                      "queued": 0, "running": 0})
    assert fig["lost"] == 3 and fig["drain_t"] is None and fig["scale_up_t"] == 2
    md = report.summary_markdown(fig, {"title": "t"})
    assert "| **Jobs lost** | **3** |" in md and "not drained" in md
    fig = report.summarize(rows, 10, {"succeeded": 7, "queued": 2, "running": 1})
    assert fig["lost"] == 0 and fig["unfinished"] == 3


def test_unreachable_servers_fail_clearly(tmp_path):
    port = helpers.free_port()
    r = subprocess.run([sys.executable, str(DEMO), "local", "--api", f"127.0.0.1:{port}",
                        "--redis", f"redis://127.0.0.1:{helpers.free_port()}/0", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "start surge first" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, str(DEMO), "local", "--jobs", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and "--jobs must be between 1 and 10000" in r.stderr
