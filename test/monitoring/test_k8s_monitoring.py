"""k8s/monitoring renders with every overlay, targets the pods and ports
the base defines, and carries the labels kube-prometheus-stack selects on."""
import os
import subprocess

import pytest
import yaml

from conftest import ROOT, require

OVERLAYS = ["k8s/overlays/kind", "k8s/overlays/production", "keda", "keda/kind"]


def render_with_component(tmp_path, overlay):
    d = tmp_path / overlay.replace("/", "-")
    d.mkdir()
    (d / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(ROOT / overlay, d)}\n"
        f"components:\n  - {os.path.relpath(ROOT / 'k8s/monitoring', d)}\n")
    r = subprocess.run([require("kubectl"), "kustomize", str(d)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return [o for o in yaml.safe_load_all(r.stdout) if o]


def test_is_a_component():
    k = yaml.safe_load((ROOT / "k8s/monitoring/kustomization.yaml").read_text())
    assert k["kind"] == "Component"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_and_targets_the_surge_pods(tmp_path, overlay):
    objs = render_with_component(tmp_path, overlay)
    pms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "PodMonitor"}
    assert set(pms) == {"surge-api", "surge-worker"}
    deployments = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Deployment"}
    for name, pm in pms.items():
        assert pm["metadata"]["namespace"] == "surge"
        assert pm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        dep = deployments[name]
        tmpl = dep["spec"]["template"]
        sel = pm["spec"]["selector"]["matchLabels"]
        assert all(tmpl["metadata"]["labels"].get(k) == v for k, v in sel.items()), name
        # the selector picks only this Deployment's pods
        for other, d in deployments.items():
            if other != name:
                assert not all(d["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())
        assert tmpl["metadata"]["labels"][pm["spec"]["jobLabel"]] == name
        assert pm["spec"]["namespaceSelector"]["matchNames"] == [dep["metadata"]["namespace"]]
        ports = {p["name"]: p["containerPort"] for c in tmpl["spec"]["containers"] for p in c.get("ports", [])}
        ep = pm["spec"]["podMetricsEndpoints"]
        assert [e["port"] for e in ep] == ["admin"]
        assert ports["admin"] == 9090
        assert ep[0]["path"] == "/metrics"
        # the admin port really is the one the binary serves metrics on
        env = {}
        cms = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ConfigMap"}
        for ef in tmpl["spec"]["containers"][0].get("envFrom", []):
            if "configMapRef" in ef:
                env.update(cms[ef["configMapRef"]["name"]]["data"])
        assert env.get("SURGE_ADMIN_PORT") == "9090"
    rules = [o for o in objs if o["kind"] == "PrometheusRule"]
    assert len(rules) == 1 and rules[0]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    cm = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "surge-grafana-dashboard"]
    assert len(cm) == 1
    assert cm[0]["metadata"]["namespace"] == "surge"
    assert cm[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm[0]["data"]["surge-dashboard.json"] == (ROOT / "monitoring/grafana/surge-dashboard.json").read_text()


def test_prometheus_may_scrape_the_admin_port(tmp_path):
    """The base's NetworkPolicies admit Prometheus (namespace monitoring) on
    the port the PodMonitors scrape."""
    objs = render_with_component(tmp_path, "k8s/overlays/kind")
    for name in ("surge-api", "surge-worker"):
        np = [o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == name][0]
        ok = False
        for rule in np["spec"].get("ingress", []):
            peers = rule.get("from", [])
            ports = [p.get("port") for p in rule.get("ports", [])]
            if 9090 in ports and any(p.get("namespaceSelector", {}).get("matchLabels", {})
                                     .get("kubernetes.io/metadata.name") == "monitoring" for p in peers):
                ok = True
        assert ok, f"NetworkPolicy {name} does not let namespace monitoring reach 9090"


def test_custom_resources_use_only_known_fields():
    """A hand-kept subset of the monitoring.coreos.com/v1 schema: the fields
    we use, spelled as the CRDs spell them (a typo would be dropped silently)."""
    known_pm_spec = {"jobLabel", "namespaceSelector", "selector", "podMetricsEndpoints", "podTargetLabels"}
    known_ep = {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings",
                "honorLabels"}
    for o in yaml.safe_load_all((ROOT / "k8s/monitoring/podmonitors.yaml").read_text()):
        assert set(o["spec"]) <= known_pm_spec
        for ep in o["spec"]["podMetricsEndpoints"]:
            assert set(ep) <= known_ep
            assert ep["interval"].endswith("s") and ep["scrapeTimeout"].endswith("s")
    pr = yaml.safe_load((ROOT / "k8s/monitoring/prometheusrule.yaml").read_text())
    assert set(pr["spec"]) == {"groups"}
    for g in pr["spec"]["groups"]:
        assert set(g) <= {"name", "interval", "rules"}
        for r in g["rules"]:
            assert set(r) <= {"record", "alert", "expr", "for", "labels", "annotations"}
