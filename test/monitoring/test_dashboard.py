"""The Grafana dashboard shows what the issue lists, is well formed, and is
provisioned by the ConfigMap of k8s/monitoring."""
import json

from conftest import ROOT
from promql import (DASHBOARD, dashboard, dashboard_exprs, dashboard_panels, metric_name,
                    selectors, substitute)

K8S_COPY = ROOT / "k8s/monitoring/dashboards/surge-dashboard.json"


def all_metric_names():
    return {metric_name(s) for _, e in dashboard_exprs() for s in selectors(substitute(e))}


def test_json_is_valid_and_identified():
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] == "surge-scaling" and d["title"]
    assert d["schemaVersion"] >= 36
    assert K8S_COPY.read_text() == DASHBOARD.read_text(), "run `make monitoring-sync`"


def test_shows_everything_the_demonstration_needs():
    names = all_metric_names()
    wanted = {
        # queue and its target
        "surge_queue_depth", "up",
        # enqueued and finished by type and outcome, duration and wait, in progress
        "surge_jobs_enqueued_total", "surge_jobs_finished_total", "surge_job_duration_seconds_bucket",
        "surge_job_wait_seconds_bucket", "surge_jobs_in_progress",
        # retries, dead, recovered
        "surge_retry_depth", "surge_dead_depth", "surge_jobs_recovered_total",
        # replicas current and desired
        "kube_deployment_status_replicas", "kube_horizontalpodautoscaler_status_desired_replicas",
        # CPU against its request
        "container_cpu_usage_seconds_total", "kube_pod_container_resource_requests",
        # KEDA
        "keda_scaler_metrics_value",
        # API rate, latency, errors
        "surge_http_requests_total", "surge_http_request_duration_seconds_bucket",
    }
    assert wanted - names == set()
    exprs = " ".join(e for _, e in dashboard_exprs())
    for q in ("histogram_quantile(0.5,", "histogram_quantile(0.95,", "histogram_quantile(0.99,"):
        assert exprs.count(q) >= 3, f"{q} missing for job duration, job wait or API latency"
    assert "by (type, outcome)" in exprs
    assert '$queue_target * count(up{job="surge-worker"' in exprs


def test_queue_target_is_the_keda_list_length():
    import yaml
    so = yaml.safe_load((ROOT / "keda/component/scaledobject.yaml").read_text())
    trig = [t for t in so["spec"]["triggers"] if t["type"] == "redis"][0]
    var = [v for v in dashboard()["templating"]["list"] if v["name"] == "queue_target"][0]
    assert var["query"] == trig["metadata"]["listLength"] == var["current"]["value"]


def test_variables_and_datasource():
    names = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "queue_target"} <= names
    for p in dashboard_panels():
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            if not any(metric_name(s).startswith(("keda_",)) for s in selectors(substitute(t["expr"]))):
                assert 'namespace=~"$namespace"' in t["expr"], f"{p['title']}: {t['expr']}"


def test_panels_have_unique_ids_and_do_not_overlap():
    panels = dashboard_panels()
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells = {}
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]
    for p in panels:
        if p["type"] != "row":
            assert p.get("description"), f"{p['title']} has no description for the audience"
            refs = [t["refId"] for t in p["targets"]]
            assert len(refs) == len(set(refs)), p["title"]
