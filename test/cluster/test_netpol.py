"""The NetworkPolicies of k8s/base/network/ enforced, proved by real
connection attempts between pods (docs/kubernetes.md, "What runs where").

Probe pods carry the labels of each party (the api, the workers, the
ingress controller, Prometheus, KEDA's operator, a stray pod in each of
our namespaces, a pod of another namespace) and try a TCP connection to
each target: Redis, PostgreSQL, the api's public and admin ports, a
worker's admin port, and a listener in a namespace without policies (what
"anything else" stands for: the internet, other applications). Every
allowed pair must connect; every other pair must be refused or time out.
The cluster's policy engine (kube-router) rejects what it blocks, so a
refusal comes at once; that it is the firewall's and not a closed port is
shown by an allowed party connecting to the same address and port in the
same run.

Probe pods run the redis stand-in image (bash, getent, timeout; nothing is
pulled), meet Pod Security `restricted`, and those that carry the labels
of a Service's pods never turn Ready, so that no traffic is ever sent to
them."""
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from clusterlib import API_SEL, DATA_NS, NS, WORKER_SEL, kc, kc_json, log, pod, pods, ready_pods, wait_until

OUTSIDE = "surge-np-outside"
PARTIES = [  # name, namespace, labels
    ("np-api", NS, {"app.kubernetes.io/name": "surge-api", "app.kubernetes.io/component": "api"}),
    ("np-worker", NS, {"app.kubernetes.io/name": "surge-worker", "app.kubernetes.io/component": "worker"}),
    ("np-stray", NS, {"run": "np-stray"}),
    ("np-stray", DATA_NS, {"run": "np-stray"}),
    ("np-redis", DATA_NS, {"app.kubernetes.io/name": "redis", "app.kubernetes.io/component": "queue"}),
    ("np-ingress", "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx",
                                     "app.kubernetes.io/component": "controller"}),
    ("np-prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"}),
    ("np-keda", "keda", {"app.kubernetes.io/name": "keda-operator"}),
    ("np-outsider", OUTSIDE, {"run": "np-outsider"}),
]
LISTENER = ("np-listener", OUTSIDE, {"run": "np-listener"})
LISTEN_PORT = 7000
TARGETS = ["redis:6379", "redis.svc:6379", "postgres:5432", "postgres.svc:5432", "api:8080", "api:9090",
           "worker:9090", "elsewhere:7000"]
# The data stores twice: their pod's address, and their Service's name as
# the clients use it (DNS, then the cluster IP that kube-proxy forwards).
SERVICE_NAMES = {"redis.svc:6379": "redis.surge-data.svc.cluster.local",
                 "postgres.svc:5432": "postgres.surge-data.svc.cluster.local"}
# DESIGN.md: ingress controller -> api:8080; api -> redis; worker -> redis,
# postgres; KEDA operator -> redis; Prometheus -> admin ports 9090. The
# parties in namespaces without policies may reach "elsewhere"; ours may not.
ALLOWED = {("np-api", "redis:6379"), ("np-worker", "redis:6379"), ("np-worker", "postgres:5432"),
           ("np-keda", "redis:6379"), ("np-ingress", "api:8080"),
           ("np-api", "redis.svc:6379"), ("np-worker", "redis.svc:6379"), ("np-worker", "postgres.svc:5432"),
           ("np-keda", "redis.svc:6379"),
           ("np-prometheus", "api:9090"), ("np-prometheus", "worker:9090"),
           ("np-ingress", "elsewhere:7000"), ("np-prometheus", "elsewhere:7000"),
           ("np-keda", "elsewhere:7000"), ("np-outsider", "elsewhere:7000")}
# Parties that carry a Service's labels: never Ready, never an endpoint.
NOT_READY = {"np-api", "np-worker", "np-redis"}


def party_id(name, ns):
    return f"{ns}/{name}"


def probe_pod(name, ns, labels, image, command=("sleep", "infinity"), readiness=None):
    c = {"name": "probe", "image": image, "imagePullPolicy": "Never", "command": list(command),
         "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}},
         "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}
    if readiness:
        c["readinessProbe"] = readiness
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {**labels, "surge-test": "netpol"}},
            "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False,
                     "terminationGracePeriodSeconds": 0,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10009, "runAsGroup": 10009,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [c]}}


PROBE = r'''
for t in $TARGETS; do
  ip=${t#*=}; label=${t%%=*}; port=${label#*:}
  out=$(timeout 4 bash -c "exec 3<>/dev/tcp/$ip/$port" 2>&1); rc=$?
  echo "tcp|$label|$rc|$(echo $out | tr '\n' ' ')"
done
echo "dns|$(getent hosts redis.surge-data.svc.cluster.local | head -1)"
'''


def classify(rc, out):
    if rc == "0":
        return "connected"
    if "Connection refused" in out:
        return "refused"
    if rc == "124":
        return "timeout"
    return f"other (exit {rc}: {out.strip()[:80]})"


def probe(name, ns, addresses):
    targets = " ".join(f"{t}={addresses[t]}" for t in TARGETS)
    r = kc("exec", "-n", ns, name, "--", "bash", "-c", f"TARGETS='{targets}'\n{PROBE}", timeout=120)
    result, dns = {}, None
    for line in r.stdout.splitlines():
        parts = line.split("|")
        if parts[0] == "tcp" and len(parts) == 4:
            result[parts[1]] = classify(parts[2], parts[3])
        elif parts[0] == "dns":
            dns = parts[1].split()[0] if parts[1].strip() else None
    assert set(result) == set(TARGETS), f"{ns}/{name}: unexpected probe output: {r.stdout} {r.stderr}"
    return result, dns


@pytest.fixture
def probes(cluster):
    image = kc_json("get", "statefulset", "redis", "-n", DATA_NS)["spec"]["template"]["spec"]["containers"][0]["image"]
    made = []
    for ns in sorted({ns for _, ns, _ in PARTIES} - {NS, DATA_NS}):
        if kc("get", "namespace", ns, check=False).returncode != 0:
            kc("apply", "-f", "-", input=json.dumps({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                                    "surge-test": "netpol"}}}))
            made.append(ns)
    objs = [probe_pod(n, ns, labels, image,
                      readiness={"exec": {"command": ["false"]}, "periodSeconds": 30} if n in NOT_READY else None)
            for n, ns, labels in PARTIES]
    n, ns, labels = LISTENER
    objs.append(probe_pod(n, ns, labels, image,
                          command=("redis-server", "--port", str(LISTEN_PORT), "--save", "", "--appendonly", "no",
                                   "--protected-mode", "no", "--dir", "/tmp"),
                          readiness={"tcpSocket": {"port": LISTEN_PORT}, "periodSeconds": 2}))
    log(f"starting {len(objs)} probe pods ({image})")
    try:
        kc("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objs}))
        started = lambda: all((p := pod(o["metadata"]["namespace"], o["metadata"]["name"]))  # noqa: E731
                              and p["status"].get("phase") == "Running" and p["status"].get("podIP")
                              for o in objs)
        wait_until("the probe pods running", started, 180)
        wait_until("the listener ready", lambda: ready_pods(OUTSIDE, "run=np-listener"), 60)
        yield
    finally:
        log("deleting the probe pods")
        for o in objs:
            kc("delete", "pod", "-n", o["metadata"]["namespace"], o["metadata"]["name"], "--grace-period=0",
               "--force", "--ignore-not-found", "--wait=false", check=False)
        for ns in made:
            kc("delete", "namespace", ns, "--wait=false", check=False)
        # The api- and worker-labelled probes must be gone before anything
        # else runs: the autoscaler counts every pod its selector matches.
        wait_until("the probe pods gone", lambda: not pods(NS, "surge-test=netpol")
                   and not pods(DATA_NS, "surge-test=netpol"), 120)


def addresses():
    def ip(ns, selector):
        ready = ready_pods(ns, selector)
        assert ready, f"no ready pod {ns} {selector}"
        return ready[0]["status"]["podIP"]
    a = {"redis:6379": ip(DATA_NS, "app.kubernetes.io/name=redis"),
         "postgres:5432": ip(DATA_NS, "app.kubernetes.io/name=postgres"),
         "api:8080": ip(NS, API_SEL), "worker:9090": ip(NS, WORKER_SEL),
         "elsewhere:7000": ip(OUTSIDE, "run=np-listener")}
    a["api:9090"] = a["api:8080"]
    a.update(SERVICE_NAMES)
    return a


def test_network_policy_matrix(probes):
    addr = addresses()
    log("targets: " + ", ".join(f"{t} = {addr[t]}" for t in TARGETS))
    results, dns = {}, {}
    deadline = time.monotonic() + 120

    def settle(party):
        # A new pod's policies take effect once the engine has synced it (it
        # adds the pod's address to the sets the rules match): probe until
        # the pod's row is as expected or the shared ceiling is reached, and
        # say how long it took when the first attempt was not.
        name, ns, _ = party
        pid = party_id(name, ns)
        t0, first = time.monotonic(), None
        while True:
            res, d = probe(name, ns, addr)
            results[pid], dns[pid] = res, d
            first = first or res
            if all((res[t] == "connected") == ((name, t) in ALLOWED) and res[t] in ("connected", "refused", "timeout")
                   for t in TARGETS) or time.monotonic() > deadline:
                break
            time.sleep(1)
        if first != results[pid]:
            log(f"  {pid}: as expected after {time.monotonic() - t0:.0f} s; first attempt: {first}")

    # One kubectl exec per party, all at once: each takes seconds on a busy machine.
    with ThreadPoolExecutor(len(PARTIES)) as pool:
        for f in [pool.submit(settle, party) for party in PARTIES]:
            f.result()

    # The matrix, as a person reads it.
    w = max(len(p) for p in results) + 2
    log("connections (expected in brackets when different):")
    print(" " * w + "".join(f"{t:>18}" for t in TARGETS), flush=True)
    wrong = []
    for name, ns, _ in PARTIES:
        pid = party_id(name, ns)
        cells = []
        for t in TARGETS:
            got = results[pid][t]
            allowed = (name, t) in ALLOWED
            ok = got == "connected" if allowed else got in ("refused", "timeout")
            cells.append(f"{got if ok else got + ' [' + ('connect' if allowed else 'block') + ']':>18}")
            if not ok:
                wrong.append(f"{pid} -> {t}: {got}, expected {'connected' if allowed else 'refused or timeout'}")
        print(f"{pid:<{w}}" + "".join(cells), flush=True)

    # A refusal is the firewall's only if the same address and port accept
    # an allowed party: every target has one that connected.
    for t in TARGETS:
        if not any(results[party_id(n, ns)][t] == "connected" for n, ns, _ in PARTIES if (n, t) in ALLOWED):
            wrong.append(f"{t} ({addr[t]}): no allowed party connected, so its refusals prove nothing")
    # Every pod resolves names through the cluster DNS, which every policy allows.
    redis_ip = kc_json("get", "service", "redis", "-n", DATA_NS)["spec"]["clusterIP"]
    for pid, d in dns.items():
        if d != redis_ip:
            wrong.append(f"{pid}: redis.surge-data.svc.cluster.local resolved to {d!r}, not {redis_ip}")
    blocked = sum(1 for pid in results for t in TARGETS if results[pid][t] in ("refused", "timeout"))
    log(f"{len(results) * len(TARGETS)} connection attempts: {blocked} blocked, "
        f"{len(results) * len(TARGETS) - blocked} connected; DNS from all {len(dns)} parties")
    assert not wrong, "\n".join(wrong)
