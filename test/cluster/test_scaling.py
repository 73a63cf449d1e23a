"""The demonstration on the real cluster, with pods taken away while it
runs (docs/demo.md): `tools/surge-demo cluster` fires a burst of burn and
read jobs and records it; meanwhile this test

1. waits for the worker HPA to take the workers from 2 to at least 4 (it
   acts on the burns' CPU, which the disruptions below would cut short);
2. deletes a worker pod that runs a burn (SIGTERM: it finishes the burn or
   puts it back, then leaves);
3. kills another worker's process with SIGKILL from the node (we are root
   on the cluster's only node). Not a force delete: the kubelet still sends
   SIGTERM first for that, and the worker would put its job back politely;
   a crash gives no such chance;
4. deletes the Redis pod: the StatefulSet brings it back with the same
   volume, and every job is still there;
5. keeps Redis away (the StatefulSet scaled to 0: a deleted pod is back
   within seconds, before the readiness probes could tell) until the api
   pods turn NotReady, reads their /readyz naming Redis, then lets Redis
   come back and watches the api pods turn Ready by themselves;
6. restarts the PostgreSQL pod while a read job submitted with
   `tools/surgectl submit` waits for it;

then waits for the drain and for the HPA to take the workers back to 2
(test/cluster/overlay shortens the scale-down window to 30 s), and the
tests below check, each for one claim, what the cluster, Redis and the
report show. The scenario runs once for all of them.

SURGE_TEST_BURNS, SURGE_TEST_BURN_SECONDS and SURGE_TEST_READS size the
burst (default 16 burns of 15 s of CPU and 20 reads: four minutes of CPU,
about three on the two cores of the project's cluster, longer than the
disruptions take, which the last test checks)."""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback

import pytest

from clusterlib import (API_SEL, DATA_NS, NS, ROOT, WORKER_SEL, Failed, env_int, hpa_status, is_ready, kc,
                        kc_json, kube, live, log, name, node_pids, pod, pods, ready_pods, restarts, wait_at_rest,
                        wait_until, worker_pod_of)
from surgekit.api import Http, SurgeApi

BURNS = env_int("SURGE_TEST_BURNS", 16)
BURN_SECONDS = env_int("SURGE_TEST_BURN_SECONDS", 15)
READS = env_int("SURGE_TEST_READS", 20)
OVERLAY = "test/cluster/overlay"
REPORTS = ROOT / "build" / "cluster-test" / "reports"


class Sampler(threading.Thread):
    """Every 3 s: the HPA, the worker pods, the api pods, Redis and
    PostgreSQL, as the cluster reports them. Prints a line when it changes."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stop = threading.Event()

    def take(self):
        current, desired = hpa_status()
        ws = live(pods(NS, WORKER_SEL))
        s = {"t": time.monotonic(), "hpa_current": current, "hpa_desired": desired, "workers": len(ws),
             "workers_ready": sum(1 for p in ws if is_ready(p)),
             "api_ready": len(ready_pods(NS, API_SEL)),
             "redis_ready": len(ready_pods(DATA_NS, "app.kubernetes.io/name=redis")),
             "postgres_ready": len(ready_pods(DATA_NS, "app.kubernetes.io/name=postgres"))}
        return s

    def run(self):
        last = None
        while not self.stop.is_set():
            try:
                s = self.take()
            except (Failed, ConnectionError, ValueError):  # kubectl failing for a moment
                s = None
            if s:
                self.samples.append(s)
                view = {k: v for k, v in s.items() if k != "t"}
                if view != last:
                    log("cluster: HPA {hpa_current}/{hpa_desired} (current/desired), workers {workers_ready}/{workers} "
                        "ready, api {api_ready} ready, redis {redis_ready}, postgres {postgres_ready}".format(**s))
                    last = view
            self.stop.wait(3)

    def peak(self, key):
        return max((s[key] or 0 for s in self.samples), default=0)


class Demo:
    """tools/surge-demo cluster in the background, its lines echoed."""

    def __init__(self, out):
        cmd = [sys.executable, str(ROOT / "tools/surge-demo"), "cluster", "--overlay", OVERLAY, "--skip-deploy",
               "--jobs", str(BURNS), "--burn-seconds", str(BURN_SECONDS), "--reads", str(READS),
               "--interval", "5", "--tail", "0", "--until-scaled-down", "--max-seconds", "1500", "--out", str(out)]
        log("$ " + " ".join(cmd[1:]))
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        self.lines = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            print(f"    [surge-demo] {line}", flush=True)

    def said(self, prefix):
        return next((l for l in self.lines if l.startswith(prefix)), None)

    def wait(self, timeout):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)
            raise Failed(f"surge-demo did not finish within {timeout} s") from None
        self.thread.join(10)
        return self.proc.returncode


def held_burns(redis):
    """{worker name: [burn job ids it holds]} right now."""
    out = {}
    for worker, ids in redis.snapshot()["held"].items():
        burns = [i for i in ids if redis.job(i).get("type") == "burn"]
        if burns:
            out[worker] = burns
    return out


def victim(redis, exclude=()):
    """A live worker pod holding a burn, not one of exclude: (pod, worker, ids)."""
    ready = {name(p): p for p in live(pods(NS, WORKER_SEL)) if is_ready(p)}
    for worker, ids in sorted(held_burns(redis).items()):
        p = ready.get(worker_pod_of(worker))
        if p and name(p) not in exclude:
            return p, worker, ids
    return None


def replaced(ns, pod_name, old_uid):
    """The pod of that name, if it is a new one (not old_uid) and ready."""
    q = pod(ns, pod_name)
    return q if q and q["metadata"]["uid"] != old_uid and is_ready(q) else None


def all_jobs_present(redis, ids):
    """How many of the ids still have their hash in Redis."""
    replies = redis.pipeline([("HEXISTS", f"surge:job:{i}", "type") for i in ids])
    return sum(1 for r in replies if r == 1)


class Scenario:
    """Runs everything once; the tests read what it saw in `obs`."""

    def __init__(self, redis, api_pf):
        self.redis = redis
        self.api_pf = api_pf
        self.obs = {}
        self.error = None

    def step(self, label):
        log(f"=== {label}")
        self.obs.setdefault("steps", []).append((round(time.monotonic() - self.t0), label))

    def run(self):
        self.t0 = time.monotonic()
        REPORTS.mkdir(parents=True, exist_ok=True)
        self.reports_before = before = {p.name for p in REPORTS.iterdir()}
        sampler = Sampler()
        sampler.start()
        demo = Demo(REPORTS)
        self.obs["sampler"] = sampler
        self.obs["demo"] = demo
        try:
            self.disrupt(demo)
            self.step("waiting for the drain and the scale-down (surge-demo --until-scaled-down)")
            rc = demo.wait(1200)
            self.obs["demo_rc"] = rc
            self.obs["demo_s"] = time.monotonic() - self.t0
            wait_until("the HPA back at 2 workers", lambda: hpa_status() == (2, 2)
                       and len(live(pods(NS, WORKER_SEL))) == 2, 300)
            self.obs["scaled_down_s"] = time.monotonic() - self.t0
        finally:
            sampler.stop.set()
            sampler.join(10)
            if demo.proc.poll() is None:
                demo.proc.send_signal(signal.SIGINT)
                demo.proc.wait(30)
        new = sorted({p.name for p in REPORTS.iterdir()} - before)
        assert len(new) == 1, f"surge-demo made {new} in {REPORTS}"
        self.obs["report"] = REPORTS / new[0]
        for t in self.obs.get("threads", []):
            t.join(120)

    def disrupt(self, demo):
        redis = self.redis
        # The autoscaler first: it acts on the CPU of the burns, which the
        # disruptions below would cut short at the start.
        self.step("1. waiting for the HPA to bring the workers to 4 or more")
        wait_until("4 or more worker pods ready",
                   lambda: sum(1 for q in live(pods(NS, WORKER_SEL)) if is_ready(q)) >= 4, 300)
        self.obs["scaled_up_s"] = time.monotonic() - self.t0

        # 2. SIGTERM: a normal pod deletion.
        p, worker, ids = wait_until("a worker holding a burn", lambda: victim(redis), 120)
        self.step(f"2. delete worker pod {name(p)} (SIGTERM) while it runs burn {ids}")
        logs = []
        follow = subprocess.Popen([kube.kubectl_path(), "logs", "-f", "-n", NS, name(p)], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        t = threading.Thread(target=lambda: logs.extend(follow.stdout), daemon=True)
        t.start()
        self.obs.setdefault("threads", []).append(t)
        kc("delete", "pod", name(p), "-n", NS, "--wait=false")
        self.obs["sigterm"] = {"pod": name(p), "worker": worker, "ids": ids, "logs": logs, "follow": follow,
                               "uid": p["metadata"]["uid"], "at": time.time()}

        # 3. SIGKILL of another worker's process, from the node.
        p, worker, ids = wait_until("another worker holding a burn",
                                    lambda: victim(redis, exclude=(self.obs["sigterm"]["pod"],)), 120)
        pids = node_pids(p["metadata"]["uid"], "surge-worker")
        assert len(pids) == 1, f"surge-worker processes of pod {name(p)} on this node: {pids}"
        before = restarts(p)
        self.step(f"3. kill -9 {pids[0]}: the surge-worker of pod {name(p)}, running burn {ids}")
        killed_at = time.time()
        os.kill(pids[0], signal.SIGKILL)

        def restarted():
            q = pod(NS, name(p))
            if not q or restarts(q) <= before:
                return None
            term = ((q["status"]["containerStatuses"][0].get("lastState") or {}).get("terminated") or {})
            return term or None
        term = wait_until(f"pod {name(p)}'s container to restart", restarted, 120)
        self.obs["sigkill"] = {"pod": name(p), "worker": worker, "ids": ids, "at": killed_at, "terminated": term}
        log(f"  the container ended with exit code {term.get('exitCode')} ({term.get('reason')}), and restarted")
        # The deleted worker drains before Redis goes away, so that what
        # happens to its burn is its own doing.
        gone = self.obs["sigterm"]["pod"]
        wait_until(f"{gone} to finish draining and leave", lambda: pod(NS, gone) is None, 420)
        self.obs["sigterm"]["gone_after_s"] = time.time() - self.obs["sigterm"]["at"]

        ids = self.burst_ids()
        # 4. Redis deleted: back from its volume.
        old = pod(DATA_NS, "redis-0")
        self.step("4. delete pod redis-0")
        kc("delete", "pod", "redis-0", "-n", DATA_NS, "--wait=false")
        back = wait_until("redis-0 back and ready", lambda: replaced(DATA_NS, "redis-0", old["metadata"]["uid"]), 240)
        self.obs["redis_delete"] = {"old_uid": old["metadata"]["uid"], "new_uid": back["metadata"]["uid"],
                                    "ids": len(ids), "present": all_jobs_present(redis, ids)}
        log(f"  {self.obs['redis_delete']['present']} of {len(ids)} job hashes are there after the restart")
        # Its few seconds away may have turned api pods NotReady: they come back by themselves.
        wait_until("both api pods ready again", lambda: len(ready_pods(NS, API_SEL)) >= 2, 120)

        # 5. Redis away for longer: the probes of the api pods act.
        self.step("5. Redis away (StatefulSet scaled to 0): the api pods must turn NotReady")
        self.obs["probes"] = self.redis_away(ids)

        # 6. PostgreSQL restarted while a read waits for it.
        old = pod(DATA_NS, "postgres-0")
        self.step("6. delete pod postgres-0, and submit a read job with surgectl meanwhile")
        kc("delete", "pod", "postgres-0", "-n", DATA_NS, "--wait=false")
        wait_until("postgres-0 to stop being ready", lambda: not is_ready(pod(DATA_NS, "postgres-0")), 120)
        self.api_pf.ensure()
        submit = subprocess.run(
            [sys.executable, str(ROOT / "tools/surgectl"), "--api", f"http://127.0.0.1:{self.api_pf.http_port}",
             "submit", "read", "--item-id", "4242", "--no-wait"], capture_output=True, text=True, timeout=60)
        assert submit.returncode == 0, submit.stderr
        read_id = submit.stdout.strip()
        log(f"  read job {read_id} accepted while PostgreSQL is away")
        waiter = subprocess.Popen(
            [sys.executable, str(ROOT / "tools/surgectl"), "--api", f"http://127.0.0.1:{self.api_pf.http_port}",
             "--redis", redis.url, "inspect", read_id], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.obs["read_during_pg"] = {"id": read_id, "inspect_while_away": waiter.communicate(timeout=60)[0]}
        back = wait_until("postgres-0 back and ready",
                          lambda: replaced(DATA_NS, "postgres-0", old["metadata"]["uid"]), 300)
        self.obs["postgres"] = {"old_uid": old["metadata"]["uid"], "new_uid": back["metadata"]["uid"],
                                "drained_before": demo.said("drained:")}
        self.step("all disruptions done" + (" (the burst had already drained!)" if demo.said("drained:") else
                                            ", the burst still running"))

    def burst_ids(self):
        """The ids of the burst, from the jobs.csv that surge-demo writes in
        its report folder as soon as the api has accepted them."""
        new = [p for p in REPORTS.iterdir() if p.name not in self.reports_before and (p / "jobs.csv").exists()]
        assert len(new) == 1, f"surge-demo's report folder: {new}"
        with open(new[0] / "jobs.csv", newline="") as f:
            return [row["id"] for row in csv.DictReader(f)]

    def redis_away(self, ids):
        api_pods = {name(p): restarts(p) for p in ready_pods(NS, API_SEL)}
        assert len(api_pods) >= 2, api_pods
        kc("scale", "statefulset/redis", "-n", DATA_NS, "--replicas=0")
        away_at = time.monotonic()
        obs = {"api_pods": sorted(api_pods)}
        try:
            wait_until("redis-0 gone", lambda: pod(DATA_NS, "redis-0") is None, 120)
            wait_until("every api pod NotReady", lambda: not any(is_ready(pod(NS, n)) for n in api_pods), 120)
            obs["not_ready_after_s"] = time.monotonic() - away_at
            obs["readyz"], obs["post"] = {}, {}
            for n in api_pods:
                pf = kube.PortForward(f"pod/{n}", (8080, 9090)).start()
                try:
                    admin = Http(f"127.0.0.1:{pf.admin_port}", default_port=9090, timeout=10)
                    status, _, body = admin.request("GET", "/readyz")
                    obs["readyz"][n] = (status, body.decode(errors="replace"))
                    admin.close()
                    api = SurgeApi(f"127.0.0.1:{pf.http_port}", timeout=10)
                    status, headers, body = api.request("POST", "/jobs", {"type": "read", "params": {"item_id": 1}})
                    obs["post"][n] = (status, headers.get("retry-after"), body.decode(errors="replace"))
                    api.close()
                finally:
                    pf.stop()
                log(f"  {n}: GET /readyz -> {obs['readyz'][n][0]} {obs['readyz'][n][1][:160]}")
                log(f"  {n}: POST /jobs -> {obs['post'][n][0]}, Retry-After {obs['post'][n][1]}")
        finally:
            self.step("5. Redis back (StatefulSet scaled to 1)")
            kc("scale", "statefulset/redis", "-n", DATA_NS, "--replicas=1")
            back_at = time.monotonic()
        wait_until("redis-0 ready", lambda: is_ready(pod(DATA_NS, "redis-0")), 240)
        wait_until("every api pod Ready again, by itself", lambda: all(is_ready(pod(NS, n)) for n in api_pods), 180)
        obs["ready_again_s"] = time.monotonic() - back_at
        obs["restarts"] = {n: restarts(pod(NS, n)) - r for n, r in api_pods.items()}
        obs["present"] = all_jobs_present(self.redis, ids)
        obs["ids"] = len(ids)
        return obs


@pytest.fixture(scope="module")
def scenario(redis):
    wait_at_rest(redis)
    api_pf = kube.PortForward().start()
    s = Scenario(redis, api_pf)
    try:
        s.run()
    except Exception as e:  # noqa: BLE001 - every test below reports it
        s.error = "".join(traceback.format_exception(e))
        log(f"the scenario failed: {e}")
    finally:
        api_pf.stop()
    yield s
    wait_at_rest(redis)


def need(s, *keys):
    if s.error:
        pytest.fail(f"the scenario failed:\n{s.error}")
    for k in keys:
        if k not in s.obs:
            pytest.fail(f"the scenario did not get as far as {k!r}")
    return [s.obs[k] for k in keys]


def report(s):
    (folder,) = need(s, "report")
    run = json.loads((folder / "run.json").read_text())
    with open(folder / "jobs.csv", newline="") as f:
        jobs = list(csv.DictReader(f))
    return folder, run, jobs


def test_hpa_scales_out_to_4_and_back_to_2(scenario):
    sampler, rc = need(scenario, "sampler", "demo_rc")
    folder, run, _ = report(scenario)
    fig = run["figures"]
    log(f"HPA peak {sampler.peak('hpa_current')} replicas, {sampler.peak('workers_ready')} workers ready at once; "
        f"report: {fig['initial_replicas']} -> peak {fig['peak_replicas']} -> {fig['final_replicas']}, "
        f"scale-up {fig['scale_up_t']} s, drained {fig['drain_t']} s, scale-down started {fig['scale_down_t']} s")
    assert rc == 0, "surge-demo failed (its output is above)"
    assert fig["initial_replicas"] == 2
    assert sampler.peak("hpa_current") >= 4 and sampler.peak("workers_ready") >= 4
    assert fig["peak_replicas"] >= 4 and fig["scale_up_t"] is not None
    assert fig["drain_t"] is not None and fig["final_replicas"] == 2
    assert hpa_status() == (2, 2)


def test_every_accepted_job_succeeded_and_none_is_lost(scenario, redis):
    (demo,) = need(scenario, "demo")
    folder, run, jobs = report(scenario)
    fig, final = run["figures"], run["final_states"]
    assert fig["accepted"] == BURNS + READS and fig["rejected"] == 0, fig
    # The report's own count, printed at the end of the run...
    assert demo.said("jobs lost: 0"), demo.said("jobs lost:")
    assert fig["lost"] == 0 and final["missing"] == 0 and final["succeeded"] == fig["accepted"], final
    # ...and Redis itself, job by job.
    assert len(jobs) == fig["accepted"]
    statuses = redis.pipeline([("HGET", f"surge:job:{j['id']}", "status") for j in jobs])
    bad = [(j["id"], j["type"], st) for j, st in zip(jobs, statuses) if st != "succeeded"]
    assert not bad, f"jobs not succeeded in Redis: {bad}"
    (read,) = need(scenario, "read_during_pg")
    job = wait_job(redis, read["id"])
    assert job.get("status") == "succeeded" and '"id":4242' in job.get("result", ""), job
    again = [j for j in jobs if j["attempts"] not in ("1", "")]
    log(f"{len(jobs)} jobs of the burst and 1 read during the PostgreSQL restart: all succeeded in Redis; "
        f"{len(again)} ran more than once: {[(j['id'], j['type'], j['attempts']) for j in again]}")


def surgectl(api, redis, *args):
    return subprocess.run([sys.executable, str(ROOT / "tools/surgectl"), "--api", f"http://127.0.0.1:{api.http_port}",
                           "--redis", redis.url, *args], capture_output=True, text=True, timeout=120)


def wait_job(redis, job_id):
    return wait_until(f"job {job_id} finished", lambda: (j := redis.job(job_id)).get("status") in
                      ("succeeded", "failed", "dead") and j, 300)


def test_deleted_worker_finishes_or_returns_its_burn(scenario, redis):
    (t,) = need(scenario, "sigterm")
    t["follow"].wait(60)
    text = "".join(t["logs"])
    log(f"{t['pod']} (SIGTERM), gone {t['gone_after_s']:.0f} s after: "
        + " | ".join(l.strip()[:160] for l in t["logs"][-3:]))
    assert '"shutdown_started"' in text and "signal 15" in text, f"no SIGTERM seen:\n{text[-2000:]}"
    assert '"drained"' in text, f"{t['pod']} never said it drained:\n{text[-2000:]}"
    assert '"shutdown_forced"' not in text, text[-2000:]
    for i in t["ids"]:
        assert f"job {i}" in text, f"{t['pod']} says nothing of its burn {i}:\n{text[-2000:]}"
        job = wait_job(redis, i)
        assert job["status"] == "succeeded", job
        here = job.get("worker") == t["worker"]
        log(f"  its burn {i}: {'finished there' if here else 'went back and finished on ' + job.get('worker', '?')}, "
            f"attempts {job.get('attempts')}")
    assert pod(NS, t["pod"]) is None, f"{t['pod']} is still there"


def test_killed_worker_job_runs_again(scenario, redis, api):
    (k,) = need(scenario, "sigkill")
    assert k["terminated"].get("exitCode") == 137, k["terminated"]   # 128 + SIGKILL
    for i in k["ids"]:
        job = wait_job(redis, i)
        r = surgectl(api, redis, "inspect", i)
        log(f"$ surgectl inspect {i}\n{r.stdout}")
        assert r.returncode == 0 and "status    succeeded" in r.stdout, r.stdout + r.stderr
        assert job["status"] == "succeeded", job
        assert int(job.get("attempts", 0)) >= 2, f"the killed worker's job did not run again: {job}"


def test_redis_comes_back_from_its_volume(scenario):
    (r,) = need(scenario, "redis_delete")
    assert r["new_uid"] != r["old_uid"]
    assert r["present"] == r["ids"] > 0, r


def test_api_pods_not_ready_while_redis_is_away(scenario):
    (p,) = need(scenario, "probes")
    log(f"api pods NotReady {p['not_ready_after_s']:.0f} s after Redis went away, Ready again "
        f"{p['ready_again_s']:.0f} s after it came back; restarts {p['restarts']}")
    for n in p["api_pods"]:
        status, body = p["readyz"][n]
        assert status == 503, (n, status, body)
        checks = json.loads(body)["checks"]
        assert checks["redis"]["status"] != "ok", (n, body)
        status, retry_after, body = p["post"][n]
        assert status == 503 and retry_after, (n, status, retry_after, body)
    assert all(v == 0 for v in p["restarts"].values()), p["restarts"]
    assert p["present"] == p["ids"], p


def test_postgres_restart(scenario):
    (pg,) = need(scenario, "postgres")
    assert pg["new_uid"] != pg["old_uid"]
    assert not pg["drained_before"], "the burst drained before PostgreSQL restarted: make it longer"


def test_reads_are_not_held_behind_the_burns(scenario, redis):
    """docs/demo.md: the burns queue, the reads do not wait for them. Every
    read of the burst has finished before the last burn of the burst was
    even taken (times from the jobs' own hashes in Redis), and the report
    says how long the reads took."""
    (demo,) = need(scenario, "demo")
    _, run, jobs = report(scenario)
    line = demo.said("read latency during the burst:")
    log(line or "surge-demo printed no read latency line")
    assert line and run["figures"].get("read_latency"), run["figures"]
    times = redis.pipeline([("HMGET", f"surge:job:{j['id']}", "type", "started_at", "finished_at") for j in jobs])
    reads_done = max(f for t, _, f in times if t == "read")
    last_burn_taken = max(s for t, s, _ in times if t == "burn")
    log(f"last read finished {reads_done}, last burn taken {last_burn_taken}")
    assert reads_done < last_burn_taken, (reads_done, last_burn_taken)
