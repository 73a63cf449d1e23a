"""What the cluster tests share: kubectl (as admin or as a role), waits on
events with a ceiling and a progress line, the state of pods and workloads,
port-forwards (tools/surgekit's), Redis through a port-forward, and the
processes of a pod on this machine, which is the cluster's only node.

Every wait polls for the event it names and fails with what it saw last;
none sleeps a fixed time. Progress goes to stdout, unbuffered, so that a
person watching CI sees what the run is waiting for."""
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

from surgekit import kube, stats  # noqa: E402
from surgekit.resp import Redis, RedisError  # noqa: E402

NS, DATA_NS = "surge", "surge-data"
API_SEL = "app.kubernetes.io/name=surge-api"
WORKER_SEL = "app.kubernetes.io/name=surge-worker"
# The identities of docs/kubernetes.md's RBAC section: any user name, the group decides.
OPS = ("alice", "surge:ops")
DEV = ("bob", "surge:dev")

_T0 = time.monotonic()


def log(message):
    print(f"[cluster-test {time.strftime('%H:%M:%S')} +{time.monotonic() - _T0:5.0f}s] {message}", flush=True)


class Failed(AssertionError):
    pass


# ---------------------------------------------------------------- kubectl

def kc(*args, timeout=90, check=True, input=None, as_=None):
    """kubectl ARGS as the cluster admin, or as_=(user, group) impersonated.
    Returns the CompletedProcess; check=True fails (KubeError) on a non-zero exit."""
    return kube.kubectl(*args, timeout=timeout, check=check, input=input, as_=as_)


def kc_json(*args, timeout=90, as_=None):
    return json.loads(kc(*args, "-o", "json", timeout=timeout, as_=as_).stdout)


def apply(objects, timeout=90):
    """kubectl apply of a list of objects (dicts)."""
    doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    return kc("apply", "-f", "-", input=doc, timeout=timeout)


# ---------------------------------------------------------------- waits

def wait_until(what, fn, timeout, interval=2.0, quiet=False):
    """Calls fn() until it returns something true and returns that. A
    progress line every 20 s; on timeout fails with the last value or
    exception. Exceptions from fn (a kubectl call failing while a pod
    restarts) are retried like a false answer."""
    t0 = time.monotonic()
    last, said = None, t0
    if not quiet:
        log(f"waiting for {what} (at most {timeout:.0f} s)")
    while True:
        try:
            v = fn()
            if v:
                if not quiet:
                    log(f"  {what}: after {time.monotonic() - t0:.0f} s")
                return v
            last = v
        except (Failed, ConnectionError, RedisError, OSError, ValueError, KeyError) as e:
            last = e
        now = time.monotonic()
        if now - t0 >= timeout:
            raise Failed(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
        if now - said >= 20:
            log(f"  still waiting for {what} ({now - t0:.0f} s; last: {str(last)[:150]})")
            said = now
        time.sleep(interval)


# ---------------------------------------------------------------- pods and workloads

def pods(ns, selector=None):
    args = ["get", "pods", "-n", ns] + (["-l", selector] if selector else [])
    return kc_json(*args)["items"]


def pod(ns, name):
    r = kc("get", "pod", name, "-n", ns, "-o", "json", check=False)
    return json.loads(r.stdout) if r.returncode == 0 else None


def is_ready(p):
    if not p or p["metadata"].get("deletionTimestamp"):
        return False
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions", []))


def live(ps):
    """Pods not being deleted."""
    return [p for p in ps if not p["metadata"].get("deletionTimestamp")]


def ready_pods(ns, selector):
    return [p for p in pods(ns, selector) if is_ready(p)]


def name(p):
    return p["metadata"]["name"]


def restarts(p):
    return sum(c.get("restartCount", 0) for c in p.get("status", {}).get("containerStatuses", []) or [])


def rollout(ns, kind_name, timeout=300, as_=None):
    log(f"rollout status {ns}/{kind_name}")
    kc("rollout", "status", "-n", ns, kind_name, f"--timeout={timeout}s", timeout=timeout + 30, as_=as_)


def hpa_status(ns=NS, hpa="surge-worker"):
    st = kc_json("get", "hpa", hpa, "-n", ns).get("status", {})
    return st.get("currentReplicas"), st.get("desiredReplicas")


def secret_value(ns, secret, key):
    import base64
    data = kc_json("get", "secret", secret, "-n", ns)["data"]
    return base64.b64decode(data[key]).decode()


# ---------------------------------------------------------------- surge at rest

def wait_at_rest(redis, timeout=420):
    """Every surge workload ready, the workers back at the HPA's minimum
    and nothing waiting or running in Redis: the state every test starts
    from and leaves behind."""
    def rest():
        for ns, sel in ((DATA_NS, "app.kubernetes.io/name=redis"), (DATA_NS, "app.kubernetes.io/name=postgres"),
                        (NS, API_SEL)):
            if not ready_pods(ns, sel):
                return False
        if len(ready_pods(NS, API_SEL)) < 2:
            return False
        workers = live(pods(NS, WORKER_SEL))
        current, desired = hpa_status()
        if not (current == desired == 2 and len(workers) == 2 and all(is_ready(p) for p in workers)):
            return False
        s = redis.snapshot()
        return s["queue"] == 0 and s["processing"] == 0 and s["retry"] == 0
    wait_until("surge at rest (all pods ready, 2 workers, nothing queued or running)", rest, timeout)


# ---------------------------------------------------------------- Redis

class ClusterRedis:
    """Redis of the cluster through `kubectl port-forward pod/redis-0`, as
    the ACL user `worker` (the only user that may read the job hashes and
    lists). Survives Redis restarting: a lost connection restarts the
    port-forward and is retried for up to `patience` seconds."""

    def __init__(self, patience=180):
        self.password = secret_value(NS, "surge-worker", "SURGE_REDIS_PASSWORD")
        self.pf = kube.PortForward("pod/redis-0", (6379,), namespace=DATA_NS)
        self.patience = patience
        self.r = None
        self.prefix = "surge:"

    @property
    def url(self):
        """For surgectl --redis (starts the port-forward if needed)."""
        self.pf.ensure()
        return f"redis://worker:{self.password}@127.0.0.1:{self.pf.local[6379]}/0"

    def _client(self):
        self.pf.ensure()
        if self.r is None:
            self.r = Redis("127.0.0.1", self.pf.local[6379], username="worker", password=self.password, timeout=10)
        return self.r

    def _retry(self, fn):
        deadline = time.monotonic() + self.patience
        while True:
            try:
                return fn(self._client())
            except (ConnectionError, kube.KubeError, OSError) as e:
                if self.r:
                    self.r.close()
                self.r = None
                self.pf.stop()
                if time.monotonic() > deadline:
                    raise Failed(f"Redis unreachable through the port-forward for {self.patience} s: {e}") from None
                time.sleep(1)

    def call(self, *args):
        return self._retry(lambda r: r.call(*args))

    def pipeline(self, cmds):
        return self._retry(lambda r: r.pipeline(cmds))

    def snapshot(self):
        """surgectl's view (tools/surgekit/stats.py: queue, retry, dead,
        processing, live workers), plus the ids each registered worker holds."""
        def snap(r):
            s = stats.snapshot(r, self.prefix)
            names = stats.registered_workers(r, self.prefix)
            lists = r.pipeline([("LRANGE", f"{self.prefix}processing:{n}", 0, -1) for n in names])
            s["held"] = {n: ids for n, ids in zip(names, lists) if ids}
            s["workers"] = s["worker_names"]
            return s
        return self._retry(snap)

    def job(self, job_id):
        items = self.call("HGETALL", self.prefix + "job:" + job_id) or []
        return dict(zip(items[0::2], items[1::2]))

    def close(self):
        if self.r:
            self.r.close()
        self.pf.stop()


def worker_pod_of(worker_name):
    """surge-worker names itself <hostname>-<pid>; the hostname is the pod's name."""
    return worker_name.rsplit("-", 1)[0]


# ---------------------------------------------------------------- the node

def node_pids(pod_uid, comm):
    """PIDs on this machine (the cluster's node) of the processes named comm
    in the pod with that UID: its cgroup path names the pod."""
    marks = (f"pod{pod_uid}", f"pod{pod_uid.replace('-', '_')}")
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if (p / "comm").read_text().strip() != comm:
                continue
            cg = (p / "cgroup").read_text()
        except OSError:
            continue
        if any(m in cg for m in marks):
            out.append(int(p.name))
    return out


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v else default
