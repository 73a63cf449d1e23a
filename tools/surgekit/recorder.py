"""The demo recorder: fires a burst of jobs, samples the system every few
seconds (queue, replicas, CPU, jobs done), prints a line per sample and
writes the report folder. The same loop runs against a cluster (kube.py's
KubeSource) and against `make run` on this machine (LocalSource)."""
import datetime as _dt
import json
import os
import random
import time
from pathlib import Path

from . import promtext, report, stats
from .api import Http

FINAL = ("succeeded", "failed", "dead")
# A job whose status is `failed` with one of these errors is failed for good;
# any other failure is retried after a backoff (the api does not show which).
PERMANENT_ERRORS = {"not_found", "bad_params", "unknown_type", "bad_job"}


def utc_now():
    return _dt.datetime.now(_dt.timezone.utc)


def is_final(job):
    st = job.get("status")
    if st in ("succeeded", "dead"):
        return True
    if st == "failed":
        err = job.get("error") or {}
        return isinstance(err, dict) and err.get("code") in PERMANENT_ERRORS
    return False


def iso_seconds(ts):
    """Seconds since the epoch of the api's timestamps (2026-11-25T19:42:03.123Z), or None."""
    try:
        t = _dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
    except (TypeError, ValueError):
        return None
    return t.timestamp()


class JobTracker:
    """Follows the jobs of the burst through GET /jobs/{id}."""

    def __init__(self, api):
        self.api = api
        self.state = {}      # id -> status, or "missing" for a 404
        self.order = []
        self.cursor = 0
        self.seen = {}       # id -> (type, attempts, worker) as last answered
        self.latency = {}    # id -> seconds from its created_at to its finished_at, once final

    def add(self, job_id, job_type=""):
        self.state[job_id] = "queued"
        self.order.append(job_id)
        self.seen[job_id] = (job_type, None, None)

    def _check(self, job_id):
        # A 503 (Redis away or slow for a moment) raises Unavailable, a
        # ConnectionError: the recorder skips that sample and looks again.
        job = self.api.job(job_id)
        if job is None:
            self.state[job_id] = "missing"
            return
        if is_final(job):
            self.state[job_id] = job["status"]
            created, finished = iso_seconds(job.get("created_at")), iso_seconds(job.get("finished_at"))
            if created is not None and finished is not None:
                self.latency[job_id] = finished - created
        else:
            self.state[job_id] = "retrying" if job.get("status") == "failed" else job.get("status", "?")
        self.seen[job_id] = (job.get("type") or self.seen[job_id][0], job.get("attempts"), job.get("worker"))

    def rows(self):
        """One row per job of the burst, in submission order: id, type,
        state, attempts, worker (as last answered by the api)."""
        return [{"id": i, "type": self.seen[i][0], "state": self.state[i],
                 "attempts": self.seen[i][1], "worker": self.seen[i][2],
                 "latency_seconds": self.latency.get(i)} for i in self.order]

    def pending(self):
        return [i for i in self.order if self.state[i] not in FINAL]

    def poll(self, budget_seconds):
        """Checks unfinished jobs, round robin, for at most budget_seconds."""
        pend = self.pending()
        if not pend:
            return
        deadline = time.monotonic() + budget_seconds
        n = len(pend)
        start = self.cursor % n
        for k in range(n):
            self._check(pend[(start + k) % n])
            self.cursor += 1
            if time.monotonic() >= deadline:
                break

    def sweep(self):
        for i in self.pending():
            self._check(i)

    def counts(self):
        c = {}
        for st in self.state.values():
            c[st] = c.get(st, 0) + 1
        return c


class LocalSource:
    """surge on this machine (`make run`): replicas are the live worker
    heartbeats in Redis; CPU is the rate of the workers' process_cpu_seconds_total."""

    def __init__(self, redis, prefix, worker_metrics):
        self.redis = redis
        self.prefix = prefix
        self.targets = [Http(u, default_port=9091, timeout=3) for u in worker_metrics]
        self.prev = {}

    def describe(self):
        workers = ", ".join(t.address for t in self.targets) or "none"
        return f"this machine: Redis {self.redis.address}, worker metrics {workers}"

    def cpu_cores(self):
        now = time.monotonic()
        total, known = 0.0, False
        for t in self.targets:
            try:
                _, _, body = t.request("GET", "/metrics")
            except ConnectionError:
                self.prev.pop(t.address, None)
                continue
            cpu = promtext.total(promtext.parse(body.decode(errors="replace")), "process_cpu_seconds_total")
            prev = self.prev.get(t.address)
            self.prev[t.address] = (now, cpu)
            if prev and now > prev[0] and cpu >= prev[1]:
                total += (cpu - prev[1]) / (now - prev[0])
                known = True
        return total if known else None

    def sample(self):
        snap = stats.snapshot(self.redis, self.prefix)
        return {
            "queue": snap["queue"], "queue_read": snap["queues"]["read"],
            "queue_burn": snap["queues"]["burn"], "retry": snap["retry"], "dead_list": snap["dead"],
            "replicas": snap["workers"], "replicas_desired": None,
            "cpu_cores": self.cpu_cores(), "cpu_request_cores": None,
            "processing": snap["processing"],
        }

    def close(self):
        self.redis.close()
        for t in self.targets:
            t.close()


def burst_plan(burns, burn_seconds, reads, seed=7):
    """The jobs of the burst: burns with reads spread among them."""
    rnd = random.Random(seed)
    jobs = [("burn", {"seconds": burn_seconds}) for _ in range(burns)]
    for i in range(reads):
        pos = (i * (len(jobs) + 1)) // max(reads, 1) + i
        jobs.insert(min(pos, len(jobs)), ("read", {"item_id": rnd.randint(1, 100000)}))
    return jobs


def live_line(s, total):
    rep = f"{s['replicas']}"
    if s.get("replicas_desired") is not None:
        rep += f" (desired {s['replicas_desired']})"
    if s.get("cpu_cores") is None:
        cpu = "   n/a"
    else:
        cpu = f"{s['cpu_cores']:5.2f} cores"
        if s.get("cpu_request_cores"):
            cpu += f" ({s['cpu_cores'] / s['cpu_request_cores'] * 100:4.0f} % of request)"
    by_type = ""
    if s.get("queue_burn") is not None and s.get("queue_read") is not None:
        by_type = f" (burn {s['queue_burn']:4d}, read {s['queue_read']:3d})"
    return (f"{report.fmt_t(s['t_seconds']):>6}  queue {s['queue']:4d}{by_type}  running {s['running']:3d}  "
            f"replicas {rep:<14} CPU {cpu}  done {s['done']}/{total}")


def record(source, api, plan, *, interval=5.0, out_dir, title, target, max_seconds=1800,
           tail_seconds=0.0, until_scaled_down=False, emit=print, notes=(), before_sample=None):
    """Runs the demonstration; returns (report folder, figures).
    before_sample() runs before each sample (the cluster demo restarts a
    port-forward that died there). A sample that fails (a connection lost
    for a moment) is reported and skipped, not fatal."""
    out_dir = Path(out_dir)
    tracker = JobTracker(api)
    samples = []
    started = utc_now()
    t0 = time.monotonic()
    rejected = []

    def take():
        raw = source.sample()
        c = tracker.counts()
        s = dict(raw)
        s["t_seconds"] = time.monotonic() - t0
        s["time_utc"] = utc_now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        s["submitted"] = len(tracker.order)
        s["succeeded"], s["failed"], s["dead"] = c.get("succeeded", 0), c.get("failed", 0), c.get("dead", 0)
        s["done"] = s["succeeded"] + s["failed"] + s["dead"]
        s["running"] = c.get("running", 0)
        samples.append(s)
        emit(live_line(s, len(tracker.order)))
        return s

    take()  # the state just before the burst
    burns = sum(1 for t, _ in plan if t == "burn")
    emit(f"burst: submitting {len(plan)} jobs ({burns} burn, {len(plan) - burns} read)")
    for job_type, params in plan:
        try:
            tracker.add(api.submit(job_type, params)["id"], job_type)
        except Exception as e:  # noqa: BLE001 - counted and reported
            rejected.append(str(e))
    if rejected:
        emit(f"burst: {len(rejected)} job(s) refused, first: {rejected[0]}")
    accepted = len(tracker.order)
    # The ids are in the report folder from now on, for whoever wants to
    # follow the jobs while the burst runs; rewritten with their states at the end.
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_jobs_csv(out_dir / "jobs.csv", tracker.rows())

    next_at = time.monotonic()
    drained_at = None
    base_replicas = samples[0]["replicas"]
    skipped = 0
    while True:
        next_at += interval
        try:
            if before_sample:
                before_sample()
            tracker.poll(budget_seconds=interval * 0.5)
            s = take()
        except (ConnectionError, OSError) as e:
            skipped += 1
            emit(f"sample skipped: {e}")
            if skipped > 20 and not samples[1:]:
                raise
            time.sleep(interval)
            next_at = time.monotonic()
            continue
        all_done = not tracker.pending()
        if drained_at is None and all_done and s["queue"] == 0:
            drained_at = time.monotonic()
            emit(f"drained: every job of the burst finished after {report.fmt_t(s['t_seconds'])}")
        if drained_at is not None:
            if until_scaled_down:
                if s["replicas"] <= base_replicas and time.monotonic() - drained_at >= tail_seconds:
                    break
            elif time.monotonic() - drained_at >= tail_seconds:
                break
        if s["t_seconds"] >= max_seconds:
            emit(f"stopping: {report.fmt_t(max_seconds)} recorded (--max-seconds)")
            break
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_at = time.monotonic()

    for attempt in range(5):
        try:
            if before_sample:
                before_sample()
            tracker.sweep()
            break
        except (ConnectionError, OSError) as e:
            emit(f"final check of the jobs failed ({e}); trying again")
            time.sleep(2)
    counts = tracker.counts()
    final = {k: counts.get(k, 0) for k in ("succeeded", "failed", "dead", "missing")}
    final["queued"] = counts.get("queued", 0) + counts.get("retrying", 0)
    final["running"] = counts.get("running", 0)

    report.write_csv(out_dir / "timeline.csv", samples)
    report.write_jobs_csv(out_dir / "jobs.csv", tracker.rows())
    # The chart and the figures come from the CSVs as written, so that
    # `surge-demo report` redraws them identically from them.
    samples = report.read_csv(out_dir / "timeline.csv")
    fig = report.summarize(samples, accepted, final,
                           read_latency=report.read_latency(report.read_jobs_csv(out_dir / "jobs.csv")))
    fig["rejected"] = len(rejected)
    when = started.strftime("%Y-%m-%d %H:%M:%S UTC")
    sub = f"{when} · {target} · {accepted} jobs"
    (out_dir / "chart.svg").write_text(report.svg_chart(samples, fig, title, sub))
    burn_s = next((p.get("seconds") for t, p in plan if t == "burn"), 0)
    burst = (f"{burns} burn jobs of {burn_s} s"
             f" and {len(plan) - burns} read jobs, submitted at once; a sample every {interval:g} s")
    all_notes = list(notes)
    if skipped:
        all_notes.append(f"{skipped} sample(s) were skipped because a connection failed for a moment.")
    if rejected:
        all_notes.append(f"{len(rejected)} job(s) were refused by the api (not counted as accepted): {rejected[0]}")
    meta = {"title": title, "when": when, "target": target, "burst": burst, "notes": all_notes,
            "files": ["timeline.csv", "jobs.csv", "chart.svg", "summary.md", "run.json"]}
    (out_dir / "summary.md").write_text(report.summary_markdown(fig, meta))
    (out_dir / "run.json").write_text(json.dumps({"meta": meta, "figures": fig,
                                                  "final_states": final}, indent=2) + "\n")
    return out_dir, fig


def new_report_dir(base):
    stamp = utc_now().strftime("%Y%m%d-%H%M%S")
    d = Path(base) / stamp
    n = 1
    while d.exists():
        n += 1
        d = Path(base) / f"{stamp}-{n}"
    return d


def regenerate(folder, title=None):
    """Rewrites chart.svg and summary.md of a report folder from its timeline.csv."""
    folder = Path(folder)
    samples = report.read_csv(folder / "timeline.csv")
    run = json.loads((folder / "run.json").read_text())
    jobs = report.read_jobs_csv(folder / "jobs.csv") if (folder / "jobs.csv").exists() else []
    fig = report.summarize(samples, run["figures"]["accepted"], run["final_states"],
                           read_latency=report.read_latency(jobs))
    meta = run["meta"]
    if title:
        meta["title"] = title
    sub = f"{meta['when']} · {meta['target']} · {fig['accepted']} jobs"
    (folder / "chart.svg").write_text(report.svg_chart(samples, fig, meta["title"], sub))
    (folder / "summary.md").write_text(report.summary_markdown(fig, meta))
    return fig


def env_default(name, default):
    return os.environ.get(name) or default
