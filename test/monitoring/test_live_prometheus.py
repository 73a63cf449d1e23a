"""A real Prometheus (Debian's) with monitoring/prometheus.yml scrapes the
real binaries while a workload runs; every dashboard query and every rule
that uses surge's own metrics returns data, every surge_*/process_* name they
use is one the binaries export, and the rules evaluate without error.

Queries on kube-state-metrics, cAdvisor and KEDA metrics cannot return data
here: they are evaluated (so a syntax error fails) and listed at the end of
the run instead.

The workload makes every outcome the expressions filter on: jobs that
succeed, fail for good (a missing item), die (a worker whose PostgreSQL role
may not read the items and whose SURGE_MAX_ATTEMPTS is 1), API answers 4xx
and 5xx (a second api whose Redis is unreachable)."""
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest
import yaml

import helpers
from conftest import ROOT, require
from promql import (dashboard_exprs, is_external, metric_name, rule_exprs, selectors,
                    substitute)
from surgekit import promtext

CONFIG = ROOT / "monitoring/prometheus.yml"
EXCLUDED = []  # (where, expression), printed in the terminal summary


def prometheus_config(api_targets, worker_targets, rules_path):
    """The repository's scrape configuration with the test's ports: job names,
    paths and target labels kept; intervals shortened to 1 s."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"})
    cfg["rule_files"] = [str(rules_path)]
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"surge-api", "surge-worker"}
    for name, targets in (("surge-api", api_targets), ("surge-worker", worker_targets)):
        template = jobs[name]["static_configs"][0]["labels"]
        jobs[name]["static_configs"] = [
            {"targets": [f"127.0.0.1:{port}"], "labels": {**template, "pod": f"{name}-{i}"}}
            for i, port in enumerate(targets)]
    return cfg


class Prometheus:
    def __init__(self, folder, config):
        self.folder = folder
        self.port = helpers.free_port()
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = folder / "prometheus.log"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [require("prometheus"), f"--config.file={self.folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, cwd=self.folder)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"prometheus exited:\n{helpers.tail(self.log)}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"prometheus not ready in 30 s:\n{helpers.tail(self.log)}")
            time.sleep(0.2)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def api(self, path, **params):
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read())

    def query(self, expr):
        doc = self.api("query", query=expr)
        assert doc["status"] == "success", f"{expr}: {doc.get('errorType')}: {doc.get('error')}"
        return doc["data"]["result"]


def workload(api, bad_api, stop):
    """Keeps jobs flowing until stop is set, so rates over the last 30 s see them."""
    n = 0
    while not stop.is_set():
        try:
            helpers.http(api.http_port, "POST", "/jobs/read", {"item_id": 1 + n % 1000}, timeout=5)
            if n % 5 == 0:
                helpers.http(api.http_port, "POST", "/jobs/burn", {"seconds": 1}, timeout=5)
            if n % 7 == 0:
                helpers.http(api.http_port, "POST", "/jobs/read", {"item_id": 999999}, timeout=5)
                helpers.http(api.http_port, "POST", "/jobs", {"type": "mine"}, timeout=5)  # 400
                helpers.http(bad_api.http_port, "POST", "/jobs/read", {"item_id": 1}, timeout=5)  # 503
        except (OSError, helpers.ConnectionClosed):
            pass
        n += 1
        stop.wait(0.1)


@pytest.fixture(scope="module")
def live(tmp_path_factory, postgres):
    tmp = tmp_path_factory.mktemp("live")
    redis = helpers.RedisServer(tmp / "redis").start()
    surge = helpers.Surge(redis, postgres, tmp)
    prom = None
    stop = threading.Event()
    load = None
    try:
        api = surge.api()
        # A second api that cannot reach Redis: its POSTs answer 503.
        bad_api = surge.api(SURGE_REDIS_URL=f"redis://127.0.0.1:{helpers.free_port()}/0",
                            SURGE_REDIS_TIMEOUT_MS=200)
        w1 = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=2)
        w2 = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=2)
        # A worker whose PostgreSQL role may not read the items: the reads it
        # takes fail (database_error) and, with one attempt, die.
        w3 = surge.worker(SURGE_PG_DSN=postgres.noread_dsn, SURGE_MAX_ATTEMPTS=1)
        procs = {"api": api, "bad_api": bad_api, "workers": [w1, w2, w3]}
        prom = Prometheus(tmp, prometheus_config([api.admin_port, bad_api.admin_port],
                                                 [w1.admin_port, w2.admin_port, w3.admin_port],
                                                 ROOT / "monitoring/rules/surge.rules.yml")).start()
        load = threading.Thread(target=workload, args=(api, bad_api, stop), daemon=True)
        load.start()
        # Until every outcome the expressions name has been scraped at least twice.
        deadline = time.monotonic() + 60
        while True:
            got = prom.query('count by (outcome) (surge_jobs_finished_total)')
            outcomes = {r["metric"].get("outcome") for r in got}
            codes = {r["metric"]["code"] for r in prom.query("surge_http_requests_total{job=\"surge-api\"}")}
            ok = {"succeeded", "failed", "dead"} <= outcomes and any(c.startswith("5") for c in codes) \
                and any(c.startswith("4") for c in codes)
            if ok and prom.query("surge:dead_depth:max offset 2s"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"workload did not produce every outcome in 60 s: outcomes {outcomes}, codes {codes}")
            time.sleep(1)
        time.sleep(3)
        yield prom, procs
    finally:
        stop.set()
        if load:
            load.join(10)
        if prom:
            prom.stop()
        problems = surge.stop_all()
        redis.stop()
        if problems:
            pytest.fail("\n\n".join(problems))


def all_expressions():
    out = [(f"dashboard: {title}", substitute(e)) for title, e in dashboard_exprs()]
    out += [(f"{kind} {name}", e) for kind, name, e in rule_exprs()]
    return out


def ids(pairs):
    return [w for w, _ in pairs]


EXPRS = all_expressions()
OWN = [(w, e) for w, e in EXPRS if not is_external(e)]


@pytest.mark.parametrize("where,expr", [(w, e) for w, e in EXPRS if not w.startswith("alert")],
                         ids=[w for w, _ in EXPRS if not w.startswith("alert")])
def test_query_returns_data(live, where, expr):
    prom, _ = live
    result = prom.query(expr)  # fails on a syntax or evaluation error
    if is_external(expr):
        EXCLUDED.append((where, expr))
        return
    assert result, f"{where}: no data for {expr}"


@pytest.mark.parametrize("where,expr", [(w, e) for w, e in EXPRS if w.startswith("alert")],
                         ids=[w for w, _ in EXPRS if w.startswith("alert")])
def test_alert_expression_evaluates_and_its_selectors_have_data(live, where, expr):
    prom, _ = live
    prom.query(expr)
    if is_external(expr):
        EXCLUDED.append((where, expr))
    for sel in selectors(expr):
        if metric_name(sel).startswith(("kube_", "container_", "keda_")):
            continue
        assert prom.query(sel), f"{where}: selector {sel} has no data"


def test_every_selector_of_surge_metrics_has_data(live):
    prom, _ = live
    missing = []
    for where, expr in EXPRS:
        for sel in selectors(expr):
            if metric_name(sel).startswith(("kube_", "container_", "keda_")):
                continue
            if not prom.query(sel):
                missing.append(f"{where}: {sel}")
    assert not missing, "selectors without data:\n" + "\n".join(missing)


def test_every_metric_name_is_exported_by_the_binaries(live):
    _, procs = live
    exported = set()
    for p in [procs["api"], *procs["workers"]]:
        text = helpers.http(p.admin_port, "GET", "/metrics").body.decode()
        for name, kind in promtext.families(text).items():
            exported.add(name)
            if kind == "histogram":
                exported |= {name + "_bucket", name + "_sum", name + "_count"}
    recorded = {n for k, n, _ in rule_exprs() if k == "record"}
    used = {metric_name(s) for _, e in EXPRS for s in selectors(e)}
    ours = {n for n in used if n.startswith(("surge_", "process_"))}
    assert ours, "no surge_ or process_ metric found in the expressions"
    assert ours - exported == set(), "used but not exported by surge-api or surge-worker"
    assert {n for n in used if n.startswith("surge:")} - recorded == set(), "recording rules that do not exist"
    other = used - ours - recorded - {"up"}
    assert all(n.startswith(("kube_", "container_", "keda_")) for n in other), other


def test_rules_evaluate_without_error_in_prometheus(live):
    prom, _ = live
    doc = prom.api("rules")
    assert doc["status"] == "success"
    names = set()
    for g in doc["data"]["groups"]:
        for r in g["rules"]:
            names.add(r["name"])
            assert r["health"] in ("ok", "unknown") and not r.get("lastError"), \
                f"rule {r['name']}: {r.get('lastError')}"
    assert names == {n for _, n, _ in rule_exprs()}


def test_targets_are_up_with_kubernetes_like_labels(live):
    prom, _ = live
    up = prom.query("up")
    assert len(up) == 5 and all(r["value"][1] == "1" for r in up), up
    for r in up:
        assert r["metric"]["namespace"] == "surge" and r["metric"]["pod"].startswith(r["metric"]["job"])


def test_a_dying_worker_is_seen_by_the_alerting_rules(live):
    """The jobs the broken worker killed show in the rule SurgeJobsDying
    (pending or firing) and in the dead list."""
    prom, _ = live
    deadline = time.monotonic() + 20
    while True:
        alerts = prom.query('ALERTS{alertname="SurgeJobsDying"}')
        if alerts:
            break
        assert time.monotonic() < deadline, "SurgeJobsDying never became active"
        time.sleep(1)
    assert float(prom.query("surge:dead_depth:max")[0]["value"][1]) > 0
