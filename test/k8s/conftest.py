"""Shared helpers of the manifest checks: rendering, tool lookup, sources.

Every tool these tests need is required: a missing one fails the run loudly
(pytest.fail), it never skips.
"""
import copy
import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MK = ROOT / "mk" / "k8s.mk"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"{name} is not installed; test/k8s needs it (see docs/kubernetes.md)")
    return path


def mk_var(name: str) -> str:
    """A variable assigned with := in mk/k8s.mk (single source for versions and lists)."""
    m = re.search(rf"^{name}\s*:=\s*(.+)$", MK.read_text(), re.M)
    assert m, f"{name} is not set in {MK}"
    return m.group(1).strip()


TARGETS = mk_var("K8S_TARGETS").split()
IMAGE_VERSION = mk_var("IMAGE_VERSION")


@lru_cache(maxsize=None)
def _render(target: str) -> str:
    kubectl = require_tool("kubectl")
    proc = subprocess.run([kubectl, "kustomize", str(ROOT / target)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {target} failed:\n{proc.stderr}"
    return proc.stdout


def render(target: str) -> list:
    """The objects `kubectl kustomize TARGET` produces (a fresh copy each call)."""
    docs = [d for d in yaml.safe_load_all(_render(target)) if d]
    return copy.deepcopy(docs)


def render_text(target: str) -> str:
    return _render(target)


def find(objs, kind, name=None, namespace=None):
    out = [o for o in objs if o.get("kind") == kind
           and (name is None or o["metadata"]["name"] == name)
           and (namespace is None or o["metadata"].get("namespace") == namespace)]
    return out


def one(objs, kind, name, namespace=None):
    found = find(objs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def config_c() -> str:
    path = ROOT / "common" / "config.c"
    assert path.exists(), "common/config.c is missing: the ConfigMap is checked against it"
    return path.read_text()


def binary_variables() -> set:
    """The SURGE_ variables the binaries read: the string literals of common/config.c,
    less the retired ones (K_RETIRED), which the binaries refuse."""
    text = config_c()
    names = set(re.findall(r'"(SURGE_[A-Z0-9_]+)"', text))
    assert names, "no \"SURGE_...\" literal in common/config.c"
    retired = set(re.findall(r'\{\s*"(SURGE_[A-Z0-9_]+)",[^{}]*?\bK_RETIRED\b', text))
    assert "SURGE_WORKER_CONCURRENCY" in retired, "the retired variables are not found in config.c"
    return names - retired


# Read by the binaries but provided by Secrets, never by the ConfigMap.
SECRET_VARIABLES = {"SURGE_REDIS_PASSWORD", "PGPASSWORD"}


def keda_module_dir() -> Path:
    info = Path(os.environ.get("SURGE_KEDA_MODULE", ROOT / "build/k8s/keda-module.json"))
    if not info.is_absolute():
        info = ROOT / info
    if not info.exists():
        pytest.fail(f"{info} is missing: run `make keda-crds` (go mod download of KEDA's module)")
    d = Path(json.loads(info.read_text())["Dir"])
    assert (d / "config/crd/bases").is_dir(), f"no config/crd/bases in {d}"
    return d


def checkov_path() -> str:
    p = Path(os.environ.get("SURGE_CHECKOV", ROOT / "build/checkov-venv/bin/checkov"))
    if not p.is_absolute():
        p = ROOT / p
    if not p.exists():
        pytest.fail(f"{p} is missing: run `make checkov`")
    return str(p)


@pytest.fixture(scope="session")
def rendered():
    """target -> list of rendered objects, for every kustomization in K8S_TARGETS."""
    return {t: render(t) for t in TARGETS}
