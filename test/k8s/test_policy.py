"""Our policy checks (policy.py) on every rendered kustomization, and each
check against a broken copy, to prove it can fail."""
import copy

import pytest

import policy as P
from conftest import (IMAGE_VERSION, ROOT, SECRET_VARIABLES, TARGETS, binary_variables,
                      config_c, find, one, render)


def job_c():
    """common/job.h and job.c: the KEDA listName is checked against them."""
    paths = [ROOT / "common" / "job.h", ROOT / "common" / "job.c"]
    for path in paths:
        assert path.exists(), f"{path} is missing: the KEDA listName is checked against it"
    return "\n".join(p.read_text() for p in paths)


CHECKS = {
    "pod_security_restricted": lambda objs: P.check_pod_security_restricted(objs),
    "resources": lambda objs: P.check_resources(objs),
    "probes": lambda objs: P.check_probes(objs),
    "image_tags": lambda objs: P.check_image_tags(objs, IMAGE_VERSION),
    "autoscaled_without_replicas": lambda objs: P.check_autoscaled_without_replicas(objs),
    "single_autoscaler": lambda objs: P.check_single_autoscaler(objs),
    "burn_scales": lambda objs: P.check_burn_scales(objs),
    "drain": lambda objs: P.check_drain(objs),
    "selectors": lambda objs: P.check_selectors(objs),
    "configmap": lambda objs: P.check_configmap(objs, binary_variables(), SECRET_VARIABLES),
    "no_secrets": lambda objs: P.check_no_secrets(objs),
    "keda_list_name": lambda objs: P.check_keda_list_name(objs, config_c(), job_c()),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_rendered_manifests_pass(rendered, target, check):
    assert CHECKS[check](rendered[target]) == []


# -- each check fails on a broken copy ---------------------------------------

def container(objs, name):
    dep = one(objs, "Deployment", name)
    return dep, dep["spec"]["template"]["spec"], dep["spec"]["template"]["spec"]["containers"][0]


def break_psa_privileged(objs):
    _, _, c = container(objs, "surge-api")
    c["securityContext"]["privileged"] = True


def break_psa_root(objs):
    sts = one(objs, "StatefulSet", "redis")
    spec = sts["spec"]["template"]["spec"]
    spec["securityContext"]["runAsUser"] = 0
    del spec["containers"][0]["securityContext"]["runAsNonRoot"]
    del spec["securityContext"]["runAsNonRoot"]


def break_psa_hostpath(objs):
    sts = one(objs, "StatefulSet", "postgres")
    sts["spec"]["template"]["spec"]["volumes"].append({"name": "host", "hostPath": {"path": "/"}})


def break_psa_namespace(objs):
    ns = one(objs, "Namespace", "surge-data")
    ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] = "baseline"


def break_psa_caps(objs):
    _, _, c = container(objs, "surge-worker")
    c["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}


def break_resources(objs):
    _, _, c = container(objs, "surge-worker")
    del c["resources"]["limits"]["memory"]


def break_probe_port(objs):
    _, _, c = container(objs, "surge-api")
    c["readinessProbe"]["httpGet"]["port"] = "metrics"


def break_probe_missing(objs):
    sts = one(objs, "StatefulSet", "redis")
    del sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]


def break_probe_path(objs):
    _, _, c = container(objs, "surge-worker")
    c["livenessProbe"]["httpGet"]["path"] = "/readyz"


def break_image_latest(objs):
    sts = one(objs, "StatefulSet", "redis")
    sts["spec"]["template"]["spec"]["containers"][0]["image"] = "redis:latest"


def break_image_untagged(objs):
    _, _, c = container(objs, "surge-api")
    c["image"] = c["image"].rsplit(":", 1)[0]


def break_replicas(objs):
    dep, _, _ = container(objs, "surge-worker")
    dep["spec"]["replicas"] = 3


def break_two_autoscalers(objs):
    scaler = (find(objs, "HorizontalPodAutoscaler") + find(objs, "ScaledObject"))[0]
    twin = copy.deepcopy(scaler)
    twin["metadata"]["name"] += "-twin"
    objs.append(twin)


def break_burn_request(objs):
    _, _, c = container(objs, "surge-worker")
    c["resources"]["requests"]["cpu"] = "1"


def break_burns_past_the_limit(objs):
    P.configmap(objs)["data"]["SURGE_WORKER_BURN_CONCURRENCY"] = "2"


def break_retired_variable(objs):
    P.configmap(objs)["data"]["SURGE_WORKER_CONCURRENCY"] = "1"


def break_list_name_read_queue(objs):
    so = one(objs, "ScaledObject", "surge-worker")
    for t in so["spec"]["triggers"]:
        if t["type"] == "redis":
            t["metadata"]["listName"] = "surge:queue:read"


def break_drain(objs):
    _, spec, _ = container(objs, "surge-worker")
    spec["terminationGracePeriodSeconds"] = 60


def break_service_selector(objs):
    svc = one(objs, "Service", "postgres")
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "postgresql"}


def break_netpol_selector(objs):
    pol = one(objs, "NetworkPolicy", "redis")
    pol["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][0]["values"] = ["api"]


def break_configmap_missing(objs):
    cm = P.configmap(objs)
    del cm["data"]["SURGE_LOG_LEVEL"]


def break_configmap_extra(objs):
    cm = P.configmap(objs)
    cm["data"]["SURGE_REDIS_PASSWORD"] = "hunter2"


def break_secret_literal(objs):
    _, _, c = container(objs, "surge-worker")
    c["env"].append({"name": "PGPASSWORD", "value": "hunter2"})


def break_secret_rendered(objs):
    objs.append({"apiVersion": "v1", "kind": "Secret",
                 "metadata": {"name": "surge-api", "namespace": "surge"},
                 "stringData": {"SURGE_REDIS_PASSWORD": "hunter2"}})


def break_list_name(objs):
    so = one(objs, "ScaledObject", "surge-worker")
    for t in so["spec"]["triggers"]:
        if t["type"] == "redis":
            t["metadata"]["listName"] = "queue"


def break_prefix(objs):
    P.configmap(objs)["data"]["SURGE_KEY_PREFIX"] = "jobs:"


BROKEN = [
    ("pod_security_restricted", "k8s", break_psa_privileged),
    ("pod_security_restricted", "k8s", break_psa_root),
    ("pod_security_restricted", "k8s", break_psa_hostpath),
    ("pod_security_restricted", "k8s", break_psa_namespace),
    ("pod_security_restricted", "k8s", break_psa_caps),
    ("resources", "k8s", break_resources),
    ("probes", "k8s", break_probe_port),
    ("probes", "k8s", break_probe_missing),
    ("probes", "k8s", break_probe_path),
    ("image_tags", "k8s", break_image_latest),
    ("image_tags", "k8s/overlays/kind", break_image_untagged),
    ("autoscaled_without_replicas", "k8s", break_replicas),
    ("autoscaled_without_replicas", "keda", break_replicas),
    ("single_autoscaler", "k8s", break_two_autoscalers),
    ("single_autoscaler", "keda", break_two_autoscalers),
    ("burn_scales", "k8s", break_burn_request),
    ("burn_scales", "keda", break_burn_request),
    ("burn_scales", "k8s", break_burns_past_the_limit),
    ("drain", "k8s", break_drain),
    ("selectors", "k8s", break_service_selector),
    ("selectors", "k8s", break_netpol_selector),
    ("configmap", "k8s", break_configmap_missing),
    ("configmap", "k8s", break_configmap_extra),
    ("configmap", "k8s", break_secret_literal),
    ("configmap", "k8s", break_retired_variable),
    ("no_secrets", "k8s", break_secret_rendered),
    ("keda_list_name", "keda", break_list_name),
    ("keda_list_name", "keda", break_prefix),
    ("keda_list_name", "keda", break_list_name_read_queue),
]


@pytest.mark.parametrize("check,target,breaker", BROKEN, ids=[b[2].__name__ for b in BROKEN])
def test_check_fails_on_broken_copy(check, target, breaker):
    objs = render(target)
    assert CHECKS[check](objs) == [], "the unbroken render must pass first"
    breaker(objs)
    assert CHECKS[check](objs), f"{check} did not notice {breaker.__name__}"


def test_keda_both_together_is_caught():
    """An HPA left beside the ScaledObject (the keda component's delete patch
    forgotten) is exactly what single_autoscaler must catch."""
    objs = render("keda") + find(render("k8s"), "HorizontalPodAutoscaler")
    assert P.check_single_autoscaler(objs)
