"""checkov (pinned in test/k8s/checkov-requirements.txt, own virtualenv) on
every rendered kustomization and on the Dockerfile, with the skips and
their reasons in test/k8s/checkov.yaml; and on broken copies, to prove it
fails."""
import json
import shutil
import subprocess

import yaml

from conftest import ROOT, TARGETS, checkov_path, render, render_text

CONFIG = ROOT / "test/k8s/checkov.yaml"


def run_checkov(directory):
    proc = subprocess.run([checkov_path(), "-d", str(directory), "--config-file", str(CONFIG),
                           "-o", "json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), f"checkov crashed:\n{proc.stderr[-3000:]}"
    reports = json.loads(proc.stdout)
    if isinstance(reports, dict):
        reports = [reports]
    failed = {(r["check_type"], f["check_id"], f.get("resource", "")) for r in reports
              for f in r.get("results", {}).get("failed_checks", [])}
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    return proc.returncode, failed, passed, {r["check_type"] for r in reports}


def test_checkov_passes_on_every_render_and_the_dockerfile(tmp_path):
    for t in TARGETS:
        (tmp_path / (t.replace("/", "-") + ".yaml")).write_text(render_text(t))
    shutil.copy(ROOT / "Dockerfile", tmp_path / "Dockerfile")
    rc, failed, passed, types = run_checkov(tmp_path)
    assert types == {"kubernetes", "dockerfile"}
    assert sorted(failed) == [] and rc == 0
    assert passed > 100, "checkov ran almost no check"


def test_every_skip_has_a_reason():
    text = CONFIG.read_text()
    skips = yaml.safe_load(text)["skip-check"]
    assert skips, "no skip list"
    lines = text.splitlines()
    for check in skips:
        i = next(n for n, line in enumerate(lines) if line.strip() == f"- {check}")
        assert lines[i - 1].strip().startswith("#"), f"{check} is skipped without a written reason"
    for t in TARGETS:
        for o in render(t):
            for k, v in (o["metadata"].get("annotations") or {}).items():
                if k.startswith("checkov.io/skip"):
                    check, _, reason = v.partition("=")
                    assert len(reason.split()) >= 4, f"{o['kind']}/{o['metadata']['name']}: {check} without reason"


BROKEN_POD = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: broken
  namespace: surge
spec:
  replicas: 1
  selector:
    matchLabels: {app: broken}
  template:
    metadata:
      labels: {app: broken}
    spec:
      hostNetwork: true
      containers:
        - name: broken
          image: busybox:latest
          securityContext:
            privileged: true
"""

BROKEN_DOCKERFILE = """
FROM debian:latest
RUN apt-get update && apt-get install -y curl
ADD https://example.com/x.tar.gz /x.tar.gz
CMD ["sh"]
"""


def test_checkov_fails_on_broken_copies(tmp_path):
    (tmp_path / "broken.yaml").write_text(BROKEN_POD)
    (tmp_path / "Dockerfile").write_text(BROKEN_DOCKERFILE)
    rc, failed, _, _ = run_checkov(tmp_path)
    ids = {check for _, check, _ in failed}
    assert rc == 1
    assert {"CKV_K8S_16", "CKV_K8S_14", "CKV_K8S_19"} <= ids     # privileged, latest tag, hostNetwork
    assert {"CKV_DOCKER_3", "CKV_DOCKER_7"} <= ids               # no USER, latest base
