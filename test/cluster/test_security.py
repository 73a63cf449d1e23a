"""Pod Security and RBAC, as the API server of a real cluster enforces
them (docs/kubernetes.md, "Pod Security" and "RBAC").

- The Pod Security admission refuses a privileged pod in both namespaces
  (and admits a compliant one, so the refusal is about the privilege).
- The roles ops and dev of k8s/base/rbac/ may do exactly what the guide
  says, asked with `kubectl auth can-i` as each role; and for real: ops
  port-forwards to PostgreSQL and queries it, dev may not."""
import json
import select
import subprocess

import pytest

from clusterlib import DATA_NS, DEV, NS, OPS, kc, kube, log, secret_value


def pod(name, ns, privileged):
    sc = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    if privileged:
        sc = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 10009,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "c", "image": "surge:0.1.0", "imagePullPolicy": "Never",
                                     "command": ["surge-worker"], "securityContext": sc}]}}


def dry_run(obj):
    return kc("apply", "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False)


@pytest.mark.parametrize("ns", [NS, DATA_NS])
def test_pod_security_restricted_refuses_a_privileged_pod(cluster, ns):
    r = dry_run(pod("psa-privileged", ns, privileged=True))
    log(f"privileged pod in {ns}: exit {r.returncode}: {r.stderr.strip()[:200]}")
    assert r.returncode != 0, f"a privileged pod was admitted in {ns}: {r.stdout}"
    assert 'violates PodSecurity "restricted:latest"' in r.stderr and "privileged" in r.stderr, r.stderr
    r = dry_run(pod("psa-compliant", ns, privileged=False))
    assert r.returncode == 0, f"a compliant pod was refused in {ns}: {r.stderr}"
    # And every pod running there now meets the standard: the server says so
    # when asked to enforce it again (a warning lists each pod that would fail).
    r = kc("label", "--dry-run=server", "--overwrite", "ns", ns, "pod-security.kubernetes.io/enforce=restricted")
    assert "Warning" not in r.stderr and "violate" not in r.stderr, r.stderr


# docs/kubernetes.md: ops may restart the Deployments, edit the ConfigMap
# surge-config and port-forward to postgres-0; dev may read pods, their
# logs and events. (verb, resource, name or "", subresource or "", namespace)
CONNECT_DB = [("create", "pods", "postgres-0", "portforward", DATA_NS)]
CHANGE_CONFIG = [("patch", "configmaps", "surge-config", "", NS), ("update", "configmaps", "surge-config", "", NS)]
RESTART_APP = [("patch", "deployments", "surge-api", "", NS), ("patch", "deployments", "surge-worker", "", NS),
               ("get", "replicasets", "", "", NS)]   # kubectl rollout status follows them
READ = [(v, r, "", sub, ns) for ns in (NS, DATA_NS)
        for v, r, sub in (("get", "pods", ""), ("list", "pods", ""), ("get", "pods", "log"),
                          ("list", "events", ""), ("list", "events.events.k8s.io", ""))]
# Nobody of the two: secrets, exec, creating or deleting pods, the data
# stores' workloads and config, other ports to forward, RBAC, policies.
NEITHER = [("get", "secrets", "", "", NS), ("list", "secrets", "", "", DATA_NS),
           ("get", "secrets", "postgres", "", DATA_NS),
           ("create", "pods", "", "exec", NS), ("create", "pods", "postgres-0", "exec", DATA_NS),
           ("create", "pods", "redis-0", "portforward", DATA_NS), ("create", "pods", "", "portforward", NS),
           ("create", "pods", "", "", NS), ("delete", "pods", "", "", DATA_NS),
           ("delete", "deployments", "surge-worker", "", NS), ("create", "deployments", "", "", NS),
           ("patch", "statefulsets", "postgres", "", DATA_NS), ("patch", "configmaps", "redis-config", "", DATA_NS),
           ("patch", "configmaps", "other", "", NS), ("delete", "configmaps", "surge-config", "", NS),
           ("patch", "horizontalpodautoscalers", "surge-worker", "", NS),
           ("patch", "networkpolicies", "default-deny-all", "", NS), ("create", "rolebindings", "", "", NS),
           ("escalate", "roles", "", "", NS), ("list", "nodes", "", "", "")]


def can_i(who, verb, resource, name, sub, ns):
    target = f"{resource}/{name}" if name else resource
    args = ["auth", "can-i", verb, target]
    if sub:
        args.append(f"--subresource={sub}")
    if ns:
        args += ["-n", ns]
    r = kc(*args, check=False, as_=who)
    answer = r.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(args)}: {r.stdout} {r.stderr}"
    return answer == "yes"


ROLES = {"ops": OPS, "dev": DEV}
EXPECT = [("ops", CONNECT_DB + CHANGE_CONFIG + RESTART_APP, True),
          ("dev", CONNECT_DB + CHANGE_CONFIG + RESTART_APP, False),
          ("dev", READ, True),
          ("ops", [a for a in READ if a[3] == "log" or "events" in a[1]], False),
          ("ops", NEITHER, False), ("dev", NEITHER, False)]


@pytest.mark.parametrize("role,actions,allowed", EXPECT,
                         ids=["ops-tasks", "dev-not-tasks", "dev-reads", "ops-not-logs", "ops-not", "dev-not"])
def test_rbac_can_i(cluster, role, actions, allowed):
    wrong = [a for a in actions if can_i(ROLES[role], *a) != allowed]
    log(f"{role}: {len(actions) - len(wrong)}/{len(actions)} answers {'yes' if allowed else 'no'} as documented")
    assert not wrong, f"{role} should {'' if allowed else 'not '}be allowed: {wrong}"


def port_forward_as(who):
    return subprocess.Popen([kube.kubectl_path(), "port-forward", "-n", DATA_NS, "pod/postgres-0", ":5432",
                             f"--as={who[0]}", f"--as-group={who[1]}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def first_line(proc, timeout):
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


def test_ops_connects_to_the_database_and_dev_cannot(cluster):
    """The first of the three tasks done for real: a port-forward as ops,
    then psql as the workers' role, which may read items and nothing else."""
    pw = secret_value(DATA_NS, "postgres", "SURGE_DB_PASSWORD")
    pf = port_forward_as(OPS)
    try:
        line = first_line(pf, 60)
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        port = int(line.split(":")[1].split()[0])
        psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "surge", "-d", "surge", "-tAc"]
        env = {"PGPASSWORD": pw, "PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "10"}
        r = subprocess.run(psql + ["SELECT count(*) FROM items"], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "100000", r.stdout + r.stderr
        r = subprocess.run(psql + ["DELETE FROM items WHERE id = 1"], capture_output=True, text=True, env=env,
                           timeout=60)
        assert r.returncode != 0 and "permission denied" in r.stderr, r.stdout + r.stderr
        log("ops: port-forward to postgres-0, SELECT count(*) FROM items = 100000, DELETE refused")
    finally:
        pf.terminate()
        pf.wait(10)
    pf = port_forward_as(DEV)
    try:
        out, _ = pf.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        pf.kill()
        out, _ = pf.communicate()
        pytest.fail(f"dev's port-forward to postgres-0 was not refused: {out}")
    assert pf.returncode != 0 and "forbidden" in out.lower(), out
    log(f"dev: port-forward refused: {out.strip().splitlines()[-1][:160]}")
