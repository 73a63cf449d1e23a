"""Every rendered object validates, offline, against the real schemas:
Kubernetes 1.30 (the oldest release we support) and the newest release
kubernetes-validate ships, strict (unknown fields rejected; an API version
the release no longer serves has no schema and fails); KEDA's objects against
the openAPIV3Schema of KEDA's own CRDs at the pinned version, made strict
the same way."""
import copy
import subprocess
from functools import lru_cache

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, TARGETS, keda_module_dir, render

K8S_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]


def test_versions_cover_the_supported_range():
    assert K8S_VERSIONS[0] == "1.30.0"
    assert tuple(map(int, K8S_VERSIONS[1].split(".")[:2])) >= (1, 32), \
        "kubernetes-validate should ship schemas at least as new as kubectl 1.32"


# -- KEDA -------------------------------------------------------------------

def strict_schema(schema):
    """The CRD's schema with additionalProperties: false wherever an object
    lists its properties and neither preserves unknown fields nor allows
    additional ones: what the API server's pruning + strict field validation do."""
    if isinstance(schema, list):
        return [strict_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict_schema(v) for k, v in schema.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def keda_crds():
    """(group, kind) -> CRD, from the KEDA module's config/crd/bases."""
    crds = {}
    for path in sorted((keda_module_dir() / "config/crd/bases").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        crds[(crd["spec"]["group"], crd["spec"]["names"]["kind"])] = crd
    assert ("keda.sh", "ScaledObject") in crds and ("keda.sh", "TriggerAuthentication") in crds
    return crds


def validate_keda(obj):
    group, _, version = obj["apiVersion"].partition("/")
    crd = keda_crds().get((group, obj["kind"]))
    if crd is None:
        raise AssertionError(f"KEDA {obj['apiVersion']} has no kind {obj['kind']}")
    served = {v["name"]: v for v in crd["spec"]["versions"] if v.get("served")}
    if version not in served:
        raise AssertionError(f"KEDA {obj['kind']} is not served as {obj['apiVersion']}")
    schema = strict_schema(served[version]["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}       # checked below, as ObjectMeta
    jsonschema.validate(obj, schema, cls=jsonschema.Draft7Validator)
    # metadata against the real ObjectMeta schema: wrap it in a ConfigMap.
    for v in K8S_VERSIONS:
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": obj["metadata"]}, v, strict=True)


def validate(obj):
    """Raises when obj does not validate; returns nothing."""
    if obj["apiVersion"].split("/")[0].endswith("keda.sh"):
        validate_keda(obj)
        return
    for v in K8S_VERSIONS:
        kubernetes_validate.validate(obj, v, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_every_rendered_object_validates(rendered, target):
    errors = []
    for obj in rendered[target]:
        try:
            validate(obj)
        except Exception as e:    # noqa: BLE001 -- collect every failure with its object
            errors.append(f'{obj["kind"]}/{obj["metadata"]["name"]}: {type(e).__name__}: '
                          f'{getattr(e, "message", e)}')
    assert errors == []


def test_generated_secrets_validate(tmp_path):
    """The Secrets `make k8s-secrets` makes validate too."""
    subprocess.run([ROOT / "scripts/k8s-secrets.sh", tmp_path / "s"], check=True, capture_output=True)
    out = subprocess.run(["kubectl", "kustomize", tmp_path / "s"], check=True, capture_output=True, text=True)
    secrets = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {s["kind"] for s in secrets} == {"Secret"} and len(secrets) == 5
    for s in secrets:
        validate(s)


# -- the validation fails where it must -------------------------------------

def fails(obj):
    try:
        validate(obj)
    except Exception:    # noqa: BLE001
        return True
    return False


def pick(target, kind, name):
    return next(copy.deepcopy(o) for o in render(target)
                if o["kind"] == kind and o["metadata"]["name"] == name)


def test_misspelt_field_in_deployment_fails():
    dep = pick("k8s", "Deployment", "surge-worker")
    assert not fails(dep)
    dep["spec"]["template"]["spec"]["containers"][0]["imagePulPolicy"] = "Always"
    assert fails(dep)


def test_misspelt_top_level_spec_field_fails():
    dep = pick("k8s", "Deployment", "surge-api")
    dep["spec"]["replcas"] = dep["spec"].pop("replicas")
    assert fails(dep)


def test_wrong_type_fails():
    hpa = pick("k8s", "HorizontalPodAutoscaler", "surge-worker")
    hpa["spec"]["maxReplicas"] = "ten"
    assert fails(hpa)


def test_removed_api_version_fails():
    hpa = pick("k8s", "HorizontalPodAutoscaler", "surge-worker")
    hpa["apiVersion"] = "autoscaling/v2beta2"      # removed in Kubernetes 1.26
    assert fails(hpa)
    pdb = pick("k8s", "PodDisruptionBudget", "surge-api")
    pdb["apiVersion"] = "policy/v1beta1"           # removed in 1.25
    assert fails(pdb)


def test_misspelt_field_in_scaledobject_fails():
    so = pick("keda", "ScaledObject", "surge-worker")
    assert not fails(so)
    so["spec"]["maxReplicaCont"] = so["spec"].pop("maxReplicaCount")
    assert fails(so)


def test_misspelt_nested_field_in_scaledobject_fails():
    so = pick("keda", "ScaledObject", "surge-worker")
    so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behaviour"] = \
        so["spec"]["advanced"]["horizontalPodAutoscalerConfig"].pop("behavior")
    assert fails(so)


def test_misspelt_field_in_triggerauthentication_fails():
    ta = pick("keda", "TriggerAuthentication", "surge-redis-keda")
    assert not fails(ta)
    ta["spec"]["secretTargetRef"][0]["paramter"] = ta["spec"]["secretTargetRef"][0].pop("parameter")
    assert fails(ta)


def test_misspelt_metadata_in_scaledobject_fails():
    so = pick("keda", "ScaledObject", "surge-worker")
    so["metadata"]["lables"] = so["metadata"].pop("labels")
    assert fails(so)


def test_unknown_keda_version_fails():
    so = pick("keda", "ScaledObject", "surge-worker")
    so["apiVersion"] = "keda.sh/v1beta9"
    assert fails(so)


def test_unknown_custom_resource_fails():
    assert fails({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
