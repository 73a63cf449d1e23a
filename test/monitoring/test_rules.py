"""The PrometheusRule: promtool accepts it, its unit tests pass, every alert
is tested both firing and quiet, the Kubernetes copy is the same rules."""
import re
import subprocess

import yaml

from conftest import ROOT, require
from promql import RULES, rule_exprs, rules

RULE_TESTS = ROOT / "monitoring/rules/surge.rules.test.yml"
K8S_RULE = ROOT / "k8s/monitoring/prometheusrule.yaml"
DOC = ROOT / "docs/monitoring.md"


def test_promtool_checks_the_rules():
    r = subprocess.run([require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_unit_tests_pass():
    r = subprocess.run([require("promtool"), "test", "rules", str(RULE_TESTS)],
                       capture_output=True, text=True, cwd=RULE_TESTS.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout and "FAILED" not in r.stdout


def test_promtool_unit_tests_can_fail(tmp_path):
    """A broken threshold makes `promtool test rules` fail: the tests bite."""
    broken = RULES.read_text().replace("surge:http_errors:ratio_rate5m > 0.05",
                                       "surge:http_errors:ratio_rate5m > 0.5")
    assert broken != RULES.read_text()
    (tmp_path / "surge.rules.yml").write_text(broken)
    (tmp_path / "t.yml").write_text(RULE_TESTS.read_text())
    r = subprocess.run([require("promtool"), "test", "rules", "t.yml"], capture_output=True,
                       text=True, cwd=tmp_path)
    assert r.returncode != 0 and "SurgeApiErrors" in r.stdout + r.stderr


def test_every_alert_is_tested_firing_and_quiet():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired, quiet = set(), set()
    for t in tests:
        for a in t.get("alert_rule_test", []):
            (fired if a.get("exp_alerts") else quiet).add(a["alertname"])
    alerts = {n for k, n, _ in rule_exprs() if k == "alert"}
    assert alerts - fired == set(), "alerts never shown firing in surge.rules.test.yml"
    assert alerts - quiet == set(), "alerts never shown quiet in surge.rules.test.yml"
    assert (fired | quiet) - alerts == set(), "tests of alerts that do not exist"


def test_alerts_say_what_and_what_to_do():
    doc = DOC.read_text()
    anchors = {m.lower() for m in re.findall(r"^#+ .*?(Surge[A-Za-z]+)", doc, re.M)}
    for g in rules()["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            name = r["alert"]
            assert r.get("labels", {}).get("severity") in ("critical", "warning", "info"), name
            ann = r.get("annotations", {})
            assert ann.get("summary") and ann.get("description"), f"{name} needs a summary and a description"
            assert ann.get("runbook") == f"docs/monitoring.md#{name.lower()}", name
            assert name.lower() in anchors, f"docs/monitoring.md has no section for {name}"


def test_recording_rules_follow_the_naming_convention():
    for kind, name, _ in rule_exprs():
        if kind == "record":
            assert re.fullmatch(r"surge:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_kubernetes_copy_has_the_same_groups():
    obj = yaml.safe_load(K8S_RULE.read_text())
    assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["namespace"] == "surge"
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert obj["spec"]["groups"] == rules()["groups"]


def test_kubernetes_copies_are_up_to_date():
    r = subprocess.run([str(ROOT / "tools/monitoring-sync"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
