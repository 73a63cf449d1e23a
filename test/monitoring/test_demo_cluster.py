"""tools/surge-demo's cluster side without a cluster: kubectl is replaced by
a stand-in answering from a state file, so the preflight messages and the
reading of replicas, HPA and CPU are checked."""
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, require
from surgekit import kube
from surgekit.api import Unavailable

DEMO = ROOT / "tools/surge-demo"
FAKE = ROOT / "test/monitoring/fake_kubectl.py"

HEALTHY = {
    "context": "kind-kind",
    "metrics_server": True,
    "crds": [],
    "node_images": ["docker.io/library/surge:0.1.0", "docker.io/library/redis:7"],
}


@pytest.fixture
def fake(tmp_path, monkeypatch):
    def use(state):
        f = tmp_path / "state.json"
        f.write_text(json.dumps(state))
        exe = tmp_path / "kubectl"
        exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
        exe.chmod(0o755)
        env = {**os.environ, "FAKE_KUBE_STATE": str(f), "REAL_KUBECTL": require("kubectl"),
               "KUBECTL": str(exe)}
        for k in ("FAKE_KUBE_STATE", "REAL_KUBECTL", "KUBECTL"):
            monkeypatch.setenv(k, env[k])
        return env
    return use


def preflight(env, *extra):
    return subprocess.run([sys.executable, str(DEMO), "preflight", *extra], capture_output=True, text=True,
                          env=env, timeout=120)


def test_healthy_kind_cluster_without_keda(fake):
    r = preflight(fake(HEALTHY))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ok  ] metrics-server" in r.stdout
    assert "[note] KEDA: not installed (optional)" in r.stdout
    assert "[ok  ] overlay: k8s/overlays/kind" in r.stdout
    assert "[ok  ] image: surge:0.1.0 is on the nodes" in r.stdout


def test_keda_picks_the_keda_overlay(fake):
    r = preflight(fake({**HEALTHY, "crds": ["scaledobjects.keda.sh", "podmonitors.monitoring.coreos.com",
                                            "prometheusrules.monitoring.coreos.com"]}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ok  ] overlay: keda/kind" in r.stdout and "[ok  ] Prometheus Operator" in r.stdout


def test_missing_metrics_server_is_named_with_the_fix(fake):
    r = preflight(fake({**HEALTHY, "metrics_server": False}))
    assert r.returncode == 1
    assert "[FAIL] metrics-server: metrics-server is not installed" in r.stdout
    assert "components.yaml" in r.stdout and "--kubelet-insecure-tls" in r.stdout


def test_missing_image_on_kind_says_kind_load(fake):
    r = preflight(fake({**HEALTHY, "node_images": ["docker.io/library/redis:7"]}))
    assert r.returncode == 1
    assert "[FAIL] image: surge:0.1.0 is not on the nodes" in r.stdout and "make kind-load" in r.stdout


def test_production_placeholder_registry_is_refused(fake):
    r = preflight(fake({**HEALTHY, "context": "prod-eu"}))
    assert r.returncode == 1
    assert "[ok  ] overlay: k8s" in r.stdout
    assert "registry.example.com/surge:0.1.0 is the placeholder" in r.stdout


def test_keda_overlay_without_keda_is_refused(fake):
    r = preflight(fake(HEALTHY), "--overlay", "keda/kind")
    assert r.returncode == 1 and "needs KEDA, which is not installed" in r.stdout


def test_no_context(fake):
    r = preflight(fake({**HEALTHY, "context": ""}))
    assert r.returncode == 1 and "no current kubectl context" in r.stdout


def test_no_kubectl(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path), "KUBECTL": ""}
    r = preflight(env)
    assert r.returncode == 1 and "kubectl is not installed" in r.stdout


def test_the_project_cluster_context_picks_the_kind_overlay(fake):
    r = preflight(fake({**HEALTHY, "context": "surge"}))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[ok  ] overlay: k8s/overlays/kind" in r.stdout
    r = preflight(fake({**HEALTHY, "context": "surge", "node_images": []}))
    assert r.returncode == 1 and "make cluster-deploy" in r.stdout


ALL_SECRETS = ["surge/surge-api", "surge/surge-worker", "surge/surge-keda", "surge-data/redis-users",
               "surge-data/postgres"]


def test_deploy_keeps_the_secrets_a_cluster_has(fake, tmp_path):
    env = fake({**HEALTHY, "secrets": ALL_SECRETS})
    said = []
    kube.deploy(tmp_path, "k8s/overlays/kind", False, emit=said.append, timeout=5)
    log = open(env["FAKE_KUBE_STATE"] + ".log").read()
    assert "apply -k " + str(tmp_path / "k8s/overlays/kind") in log
    assert "secrets" not in [l.split()[-1].rsplit("/", 1)[-1] for l in log.splitlines() if l.startswith("apply")]
    assert "deploy: the Secrets exist in the cluster already; kept as they are" in said
    assert not (tmp_path / "secrets").exists()


def test_deploy_makes_and_applies_the_secrets_a_cluster_lacks(fake, tmp_path):
    env = fake({**HEALTHY, "secrets": ALL_SECRETS[:2]})
    for d in ("scripts", "k8s"):
        (tmp_path / d).symlink_to(ROOT / d)
    said = []
    kube.deploy(tmp_path, "k8s/overlays/kind", False, emit=said.append, timeout=5)
    log = open(env["FAKE_KUBE_STATE"] + ".log").read()
    assert f"apply -k {tmp_path / 'secrets'}" in log
    assert (tmp_path / "secrets/kustomization.yaml").exists()
    assert "CHANGE-ME" not in (tmp_path / "secrets/postgres.env").read_text()


class Metrics(http.server.BaseHTTPRequestHandler):
    body = (b"# TYPE surge_queue_depth gauge\nsurge_queue_depth{type=\"read\"} 3\n"
            b"surge_queue_depth{type=\"burn\"} 14\n"
            b"# TYPE surge_retry_depth gauge\nsurge_retry_depth 2\n"
            b"# TYPE surge_dead_depth gauge\nsurge_dead_depth 1\n")

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


def test_kube_source_reads_replicas_hpa_cpu_and_queue(fake):
    fake({**HEALTHY,
          "deployment": {"spec": {"template": {"spec": {"containers": [
              {"resources": {"requests": {"cpu": "250m"}}}]}}},
              "status": {"replicas": 4, "readyReplicas": 3}},
          "hpas": [{"spec": {"scaleTargetRef": {"name": "other"}}, "status": {"desiredReplicas": 9}},
                   {"spec": {"scaleTargetRef": {"name": "surge-worker"}}, "status": {"desiredReplicas": 6}}],
          "pod_metrics": [{"containers": [{"usage": {"cpu": "998m"}}]},
                          {"containers": [{"usage": {"cpu": "1500000000n"}}]},
                          {"containers": [{"usage": {"cpu": "1"}}]}]})
    srv = http.server.HTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        src = kube.KubeSource(f"127.0.0.1:{srv.server_address[1]}")
        s = src.sample()
        src.close()
    finally:
        srv.shutdown()
    assert s["replicas"] == 4 and s["ready"] == 3 and s["replicas_desired"] == 6
    assert s["cpu_cores"] == pytest.approx(3.498)
    assert s["cpu_request_cores"] == pytest.approx(1.0)
    assert (s["queue"], s["retry"], s["dead_list"]) == (17, 2, 1)
    assert (s["queue_read"], s["queue_burn"]) == (3, 14)


@pytest.mark.parametrize("q,cores", [("250m", 0.25), ("1", 1.0), ("2.5", 2.5), ("1500000n", 0.0015),
                                     ("100u", 0.0001)])
def test_cpu_quantities(q, cores):
    assert kube.cpu_quantity(q) == pytest.approx(cores)


@pytest.mark.parametrize("ref,norm", [("surge:0.1.0", "docker.io/library/surge:0.1.0"),
                                      ("registry.example.com/surge:0.1.0", "registry.example.com/surge:0.1.0"),
                                      ("me/surge:1", "docker.io/me/surge:1"),
                                      ("localhost:5000/surge:1", "localhost:5000/surge:1")])
def test_image_names(ref, norm):
    assert kube.normalize_image(ref) == norm


class FlakySource:
    """Queue drains by 2 a sample; the third sample fails like a dropped port-forward."""

    def __init__(self):
        self.n = 0
        self.queue = 6

    def sample(self):
        self.n += 1
        if self.n == 3:
            raise kube.KubeError("kubectl get deployment: connection refused")
        if self.n > 1:
            self.queue = max(0, self.queue - 2)
        return {"queue": self.queue if self.n > 1 else 0, "retry": 0, "dead_list": 0,
                "replicas": 2 if self.n < 4 else 4, "replicas_desired": 4, "cpu_cores": 1.0,
                "cpu_request_cores": 0.5}


class FakeApi:
    def __init__(self):
        self.jobs = {}
        self.polls = 0

    def submit(self, job_type, params):
        i = f"id{len(self.jobs)}"
        self.jobs[i] = 0
        return {"id": i}

    def job(self, job_id):
        self.jobs[job_id] += 1
        st = "succeeded" if self.jobs[job_id] > 2 else "running"
        return {"id": job_id, "status": st}


class RedisAwayApi(FakeApi):
    """The api answers 503 to GET /jobs/{id} for a while (Redis restarting)."""

    def job(self, job_id):
        self.polls += 1
        if 3 <= self.polls <= 8:
            raise Unavailable(f"GET /jobs/{job_id}: HTTP 503", 503)
        return super().job(job_id)


def test_recorder_waits_out_a_503_while_redis_is_away(tmp_path):
    from surgekit import recorder
    lines = []
    folder, fig = recorder.record(FlakySource(), RedisAwayApi(), recorder.burst_plan(3, 1, 1), interval=0.05,
                                  out_dir=tmp_path / "r", title="t", target="fake", tail_seconds=0.1,
                                  emit=lines.append)
    assert any(l.startswith("sample skipped: GET /jobs/") and "503" in l for l in lines), lines
    assert fig["accepted"] == 4 and fig["lost"] == 0 and fig["succeeded"] == 4
    jobs = (folder / "jobs.csv").read_text().splitlines()
    assert jobs[0] == "id,type,state,attempts,worker,latency_seconds" and len(jobs) == 5
    assert sorted(l.split(",")[1] for l in jobs[1:]) == ["burn", "burn", "burn", "read"]
    assert all(l.split(",")[2] == "succeeded" for l in jobs[1:])


def test_recorder_skips_a_failed_sample_and_still_reports(tmp_path):
    from surgekit import recorder
    lines = []
    calls = []
    folder, fig = recorder.record(FlakySource(), FakeApi(), recorder.burst_plan(4, 1, 2), interval=0.05,
                                  out_dir=tmp_path / "r", title="t", target="fake", tail_seconds=0.1,
                                  emit=lines.append, before_sample=lambda: calls.append(1))
    assert any(l.startswith("sample skipped: kubectl get deployment") for l in lines)
    assert fig["accepted"] == 6 and fig["lost"] == 0 and fig["succeeded"] == 6
    assert fig["peak_replicas"] == 4 and fig["scale_up_t"] is not None and calls
    assert "1 sample(s) were skipped" in (folder / "summary.md").read_text()
