"""The cluster side of the demonstration: preflight checks, deployment,
port-forward and the sampler that reads replicas and CPU from Kubernetes.
Everything goes through the kubectl of the current context."""
import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from . import promtext, stats
from .api import Http

NAMESPACE = "surge"
WORKER = "surge-worker"
HPA_NAMES = ("surge-worker", "keda-hpa-surge-worker")


class KubeError(ConnectionError):
    """kubectl failed or the cluster did not answer (a ConnectionError, so the
    recorder skips a sample instead of stopping)."""
    pass


def kubectl_path():
    p = os.environ.get("KUBECTL") or shutil.which("kubectl")
    if not p:
        raise KubeError("kubectl is not installed (or not on PATH): install it, "
                        "e.g. apt-get install kubernetes-client, or see https://kubernetes.io/docs/tasks/tools/")
    return p


def kubectl(*args, timeout=30, check=True, input=None, as_=None):
    """Runs kubectl ARGS (input: its stdin; as_: a (user, group) to
    impersonate); KubeError when it fails and check is true."""
    args = tuple(map(str, args)) + ((f"--as={as_[0]}", f"--as-group={as_[1]}") if as_ else ())
    try:
        r = subprocess.run([kubectl_path(), *args], capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired:
        raise KubeError(f"kubectl {' '.join(args)} did not answer within {timeout} s") from None
    if check and r.returncode != 0:
        raise KubeError(f"kubectl {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
    return r


def kubectl_json(*args, timeout=30):
    r = kubectl(*args, "-o", "json", timeout=timeout)
    return json.loads(r.stdout)


def cpu_quantity(q):
    """'250m' -> 0.25, '1' -> 1.0, '1500000n' -> 0.0015 (cores)."""
    q = str(q).strip()
    units = {"n": 1e-9, "u": 1e-6, "m": 1e-3}
    if q and q[-1] in units:
        return float(q[:-1]) * units[q[-1]]
    return float(q)


def normalize_image(ref):
    """docker.io/library/ form of an image reference, for comparing names."""
    name = ref
    first = name.split("/")[0]
    if "/" not in name or ("." not in first and ":" not in first and first != "localhost"):
        name = "docker.io/" + ("library/" + name if "/" not in name else name)
    return name


# ---------------------------------------------------------------- preflight

class Check:
    def __init__(self, name, ok, detail, required=True):
        self.name, self.ok, self.detail, self.required = name, ok, detail, required

    def line(self):
        mark = "ok  " if self.ok else ("FAIL" if self.required else "note")
        return f"  [{mark}] {self.name}: {self.detail}"


def _crd_exists(name):
    return kubectl("get", "crd", name, "--ignore-not-found", "-o", "name", check=False).stdout.strip() != ""


# The context of the project's own single-node cluster (cluster/, make
# cluster): a local cluster like kind, its images imported, never pulled.
LOCAL_CLUSTER_CONTEXT = "surge"


def is_local(context):
    return context.startswith("kind-") or context == LOCAL_CLUSTER_CONTEXT


def choose_overlay(context, keda):
    kind = is_local(context)
    if keda:
        return "keda/kind" if kind else "keda"
    return "k8s/overlays/kind" if kind else "k8s"


def overlay_images(root, overlay):
    """{image: imagePullPolicy or None} of the surge containers the overlay renders."""
    lines = kubectl("kustomize", str(Path(root) / overlay), timeout=60).stdout.splitlines()
    indent = lambda l: len(l) - len(l.lstrip(" ").lstrip("-").lstrip(" ")) if l.strip() else 10**6
    images = {}
    for i, l in enumerate(lines):
        s = l.strip().lstrip("- ")
        if not s.startswith("image:") or "surge" not in s:
            continue
        img = s.split(":", 1)[1].strip().strip('"')
        k = indent(l)
        lo = i
        while lo > 0 and indent(lines[lo - 1]) >= k and not lines[lo].lstrip().startswith("- "):
            lo -= 1
        hi = i
        while hi + 1 < len(lines) and indent(lines[hi + 1]) >= k and not lines[hi + 1].lstrip().startswith("- "):
            hi += 1
        policy = None
        for l2 in lines[lo:hi + 1]:
            s2 = l2.strip().lstrip("- ")
            if indent(l2) == k and s2.startswith("imagePullPolicy:"):
                policy = s2.split(":", 1)[1].strip()
        images[img] = policy
    return images


def preflight(root, overlay=None):
    """Runs every check; returns (checks, facts). facts: context, overlay,
    keda, monitoring (bool)."""
    checks, facts = [], {}
    try:
        kubectl_path()
    except KubeError as e:
        return [Check("kubectl", False, str(e))], facts
    checks.append(Check("kubectl", True, kubectl_path()))

    r = kubectl("config", "current-context", check=False)
    context = r.stdout.strip()
    if r.returncode != 0 or not context:
        checks.append(Check("context", False, "no current kubectl context: `kubectl config use-context NAME` "
                            "(for a local cluster: `kind create cluster`)"))
        return checks, facts
    facts["context"] = context
    checks.append(Check("context", True, context))

    r = kubectl("get", "--raw", "/version", check=False, timeout=15)
    if r.returncode != 0:
        checks.append(Check("cluster", False, f"the API server of context {context} does not answer: "
                            f"{(r.stderr or r.stdout).strip()[:300]}"))
        return checks, facts
    try:
        v = json.loads(r.stdout)
        checks.append(Check("cluster", True, f"Kubernetes {v.get('gitVersion', '?')}"))
    except ValueError:
        checks.append(Check("cluster", True, "answers"))

    r = kubectl("auth", "can-i", "create", "deployments", "--namespace", NAMESPACE, check=False)
    can = r.stdout.strip() == "yes"
    checks.append(Check("permissions", can, "may create Deployments in namespace surge" if can else
                        "your user may not create Deployments in namespace surge: ask for a role "
                        "that can (the demo applies the whole overlay)"))

    r = kubectl("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json", check=False)
    ms_ok, detail = False, ("metrics-server is not installed: the CPU autoscaler cannot measure "
                            "anything. Install it: kubectl apply -f https://github.com/kubernetes-sigs/"
                            "metrics-server/releases/latest/download/components.yaml (on kind also add "
                            "the container argument --kubelet-insecure-tls)")
    if r.returncode == 0:
        try:
            conds = json.loads(r.stdout).get("status", {}).get("conditions", [])
            avail = [c for c in conds if c.get("type") == "Available"]
            if avail and avail[0].get("status") == "True":
                ms_ok, detail = True, "metrics.k8s.io is available"
            else:
                msg = avail[0].get("message", "") if avail else "no Available condition"
                detail = f"metrics-server is installed but not available: {msg}"
        except ValueError:
            pass
    checks.append(Check("metrics-server", ms_ok, detail))

    keda = _crd_exists("scaledobjects.keda.sh")
    facts["keda"] = keda
    checks.append(Check("KEDA", keda, "installed: the workers scale on queue length and CPU" if keda else
                        "not installed (optional): the workers scale on CPU only. To scale on queue "
                        "length too, install KEDA v2 (docs/kubernetes.md)", required=False))

    mon = _crd_exists("podmonitors.monitoring.coreos.com") and _crd_exists("prometheusrules.monitoring.coreos.com")
    facts["monitoring"] = mon
    checks.append(Check("Prometheus Operator", mon, "PodMonitor/PrometheusRule CRDs present: k8s/monitoring "
                        "will be applied" if mon else "not installed (optional): no Grafana dashboard; "
                        "the demo's own report does not need it", required=False))

    overlay = overlay or choose_overlay(context, keda)
    facts["overlay"] = overlay
    if not (Path(root) / overlay / "kustomization.yaml").exists():
        checks.append(Check("overlay", False, f"{overlay}/kustomization.yaml does not exist"))
        return checks, facts
    if overlay.startswith("keda") and not keda:
        checks.append(Check("overlay", False, f"{overlay} needs KEDA, which is not installed"))
        return checks, facts
    checks.append(Check("overlay", True, overlay))

    try:
        images = overlay_images(root, overlay)
    except KubeError as e:
        checks.append(Check("image", False, str(e)))
        return checks, facts
    nodes = kubectl_json("get", "nodes").get("items", [])
    on_nodes = set()
    for n in nodes:
        for im in n.get("status", {}).get("images", []) or []:
            for name in im.get("names", []) or []:
                on_nodes.add(normalize_image(name))
    for img, policy in sorted(images.items()):
        present = normalize_image(img) in on_nodes
        if present:
            checks.append(Check("image", True, f"{img} is on the nodes"))
        elif policy == "Never" and context == LOCAL_CLUSTER_CONTEXT:
            checks.append(Check("image", False, f"{img} is not on the node and the overlay never pulls it: "
                                "run `make cluster-deploy` (builds the image and imports it into the "
                                "cluster's containerd)"))
        elif policy == "Never":
            checks.append(Check("image", False, f"{img} is not on the nodes and the overlay never pulls it: "
                                "run `make kind-load` (builds the image and loads it into kind)"))
        elif "registry.example.com" in img:
            checks.append(Check("image", False, f"{img} is the placeholder of the production overlay: push "
                                "`make image` to your registry and set its name in "
                                "k8s/overlays/production/kustomization.yaml (images: newName)"))
        else:
            checks.append(Check("image", True, f"{img} is not cached on any node yet; the nodes will pull "
                                "it (make sure it is pushed and pullable)", required=False))
    facts["images"] = sorted(images)

    for tool, why in (("bash", "scripts/k8s-secrets.sh makes the Secrets"),):
        if not shutil.which(tool):
            checks.append(Check(tool, False, f"{tool} is missing: {why}"))
    return checks, facts


# ---------------------------------------------------------------- deploy

# The Secrets the workloads need (k8s/secrets.example makes them).
SECRETS = (("surge", "surge-api"), ("surge", "surge-worker"), ("surge", "surge-keda"),
           ("surge-data", "redis-users"), ("surge-data", "postgres"))


def secrets_in_cluster():
    """The SECRETS that exist in the cluster now."""
    have = []
    for ns, name in SECRETS:
        r = kubectl("get", "secret", name, "-n", ns, "--ignore-not-found", "-o", "name", check=False)
        if r.returncode == 0 and r.stdout.strip():
            have.append((ns, name))
    return have


def deploy(root, overlay, monitoring, emit=print, timeout=600):
    root = Path(root)
    emit(f"deploy: kubectl apply -k {overlay}")
    kubectl("apply", "-k", str(root / overlay), timeout=180)
    # Secrets already in the cluster are never replaced: PostgreSQL keeps the
    # password its data directory was created with, and Redis hashes the
    # passwords only when it starts, so new values would lock the pods
    # started next out of both (docs/kubernetes.md step 4 says how to
    # change a password on purpose).
    if len(secrets_in_cluster()) == len(SECRETS):
        emit("deploy: the Secrets exist in the cluster already; kept as they are")
    else:
        secrets = root / "secrets"
        if not (secrets / "kustomization.yaml").exists():
            emit("deploy: making the Secrets in secrets/ (scripts/k8s-secrets.sh)")
            subprocess.run(["bash", str(root / "scripts/k8s-secrets.sh"), str(secrets)], check=True)
        emit("deploy: kubectl apply -k secrets/")
        kubectl("apply", "-k", str(secrets), timeout=120)
    if monitoring:
        d = root / "build/demo/monitoring"
        d.mkdir(parents=True, exist_ok=True)
        rel = os.path.relpath(root / "k8s/monitoring", d)
        (d / "kustomization.yaml").write_text(
            "# Made by tools/surge-demo: the monitoring component on its own.\n"
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"components:\n  - {rel}\n")
        emit("deploy: kubectl apply -k k8s/monitoring (PodMonitors, PrometheusRule, Grafana dashboard)")
        kubectl("apply", "-k", str(d), timeout=120)
    wait_ready(emit, timeout)


BAD_WAITING = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
               "CreateContainerError", "CrashLoopBackOff"}


def pod_problems(namespace):
    """Pods stuck for a reason that waiting will not cure."""
    out = []
    for p in kubectl_json("get", "pods", "-n", namespace).get("items", []):
        for cs in p.get("status", {}).get("containerStatuses", []) or []:
            w = (cs.get("state") or {}).get("waiting") or {}
            if w.get("reason") in BAD_WAITING:
                msg = w.get("message", "")
                hint = ""
                if w["reason"] == "ErrImageNeverPull":
                    hint = " — the image is not on the node: run `make kind-load`"
                elif "Pull" in w["reason"]:
                    hint = " — the node cannot pull the image: check its name and the registry"
                out.append(f"{namespace}/{p['metadata']['name']}: {w['reason']} {msg}{hint}")
    return out


def wait_ready(emit, timeout):
    targets = [("surge-data", "statefulset/redis"), ("surge-data", "statefulset/postgres"),
               ("surge", "deployment/surge-api"), ("surge", "deployment/surge-worker")]
    deadline = time.monotonic() + timeout
    for ns, obj in targets:
        emit(f"deploy: waiting for {ns}/{obj}")
        while True:
            r = kubectl("rollout", "status", "-n", ns, obj, "--timeout=10s", check=False, timeout=30)
            if r.returncode == 0:
                break
            problems = pod_problems(ns)
            if problems:
                raise KubeError("pods cannot start:\n  " + "\n  ".join(problems))
            if time.monotonic() > deadline:
                raise KubeError(f"{ns}/{obj} not ready after {timeout} s: "
                                f"kubectl -n {ns} describe {obj}; kubectl -n {ns} get events")


# ---------------------------------------------------------------- port-forward

class PortForward:
    """kubectl port-forward from 127.0.0.1 to a Service or pod, by default
    svc/surge-api's public (8080) and admin (9090) ports. Local ports are
    chosen by kubectl (no race with other programs picking free ports) and
    kept when it restarts."""

    def __init__(self, target="svc/surge-api", remote_ports=(8080, 9090), namespace=NAMESPACE):
        self.target = target
        self.namespace = namespace
        self.remote_ports = tuple(remote_ports)
        self.local = {}          # remote port -> local port, once known
        self.proc = None
        self._lines = []

    @property
    def http_port(self):
        return self.local[8080]

    @property
    def admin_port(self):
        return self.local[9090]

    def _read(self, proc):
        for line in proc.stdout:
            self._lines.append(line.strip())
            if len(self._lines) > 400:  # "Handling connection for ..." adds up
                del self._lines[len(self.remote_ports):200]

    def start(self, timeout=30):
        pairs = [f"{self.local.get(r, '')}:{r}" for r in self.remote_ports]
        self._lines = []
        self.proc = subprocess.Popen(
            [kubectl_path(), "port-forward", "--address", "127.0.0.1", "-n", self.namespace, self.target,
             *pairs], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # kubectl prints "Forwarding from 127.0.0.1:LOCAL -> REMOTE" once it listens.
            found = {}
            for line in list(self._lines):
                m = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
                if m:
                    found[int(m.group(2))] = int(m.group(1))
            if all(r in found for r in self.remote_ports):
                self.local.update(found)
                return self
            if self.proc.poll() is not None:
                time.sleep(0.1)  # the reader's last lines
                raise KubeError(f"kubectl port-forward to {self.namespace}/{self.target} stopped: "
                                + " ".join(self._lines)[-500:])
            time.sleep(0.1)
        self.stop()
        raise KubeError(f"kubectl port-forward to {self.namespace}/{self.target} did not open within {timeout} s")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def ensure(self):
        """Restarts the port-forward on the same local ports if it stopped
        (it does when the pod it was attached to goes away)."""
        if not self.alive():
            self.start()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---------------------------------------------------------------- sampler

class KubeSource:
    """Replicas from the Deployment and its HPA (plain or KEDA's), CPU from
    metrics.k8s.io, queue sizes from the api's /metrics (port-forwarded)."""

    def __init__(self, admin_url, namespace=NAMESPACE):
        self.admin = Http(admin_url, default_port=9090, timeout=5)
        self.namespace = namespace
        self.request_cores = None

    def describe(self):
        ctx = kubectl("config", "current-context", check=False).stdout.strip()
        return f"cluster {ctx}, namespace {self.namespace}"

    def replicas(self):
        d = kubectl_json("get", "deployment", WORKER, "-n", self.namespace)
        st = d.get("status", {})
        if self.request_cores is None:
            try:
                c = d["spec"]["template"]["spec"]["containers"][0]
                self.request_cores = cpu_quantity(c["resources"]["requests"]["cpu"])
            except (KeyError, IndexError, ValueError):
                self.request_cores = 0.0
        current = st.get("replicas", 0) or 0
        ready = st.get("readyReplicas", 0) or 0
        desired = None
        for h in kubectl_json("get", "hpa", "-n", self.namespace).get("items", []):
            if h.get("spec", {}).get("scaleTargetRef", {}).get("name") == WORKER:
                desired = h.get("status", {}).get("desiredReplicas")
        return current, ready, desired

    def cpu(self):
        r = kubectl("get", "--raw",
                    f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.namespace}/pods"
                    f"?labelSelector=app.kubernetes.io%2Fname%3D{WORKER}", check=False)
        if r.returncode != 0:
            return None, 0
        total, pods = 0.0, 0
        for item in json.loads(r.stdout).get("items", []):
            pods += 1
            for c in item.get("containers", []):
                total += cpu_quantity(c.get("usage", {}).get("cpu", "0"))
        return total, pods

    def queue(self):
        """({type: ids waiting on its queue}, retry set, dead list)."""
        _, _, body = self.admin.request("GET", "/metrics")
        samples = promtext.parse(body.decode(errors="replace"))
        get = lambda n, **m: int(promtext.total(samples, n, **m))  # noqa: E731
        queues = {t: get("surge_queue_depth", type=t) for t in stats.JOB_TYPES}
        return queues, get("surge_retry_depth"), get("surge_dead_depth")

    def sample(self):
        current, ready, desired = self.replicas()
        cpu, pods = self.cpu()
        queues, retry, dead = self.queue()
        return {
            "queue": sum(queues.values()), "queue_read": queues["read"], "queue_burn": queues["burn"],
            "retry": retry, "dead_list": dead,
            "replicas": current, "replicas_desired": desired,
            "cpu_cores": cpu, "cpu_request_cores": (self.request_cores * current) if self.request_cores else None,
            "ready": ready,
        }

    def close(self):
        self.admin.close()

