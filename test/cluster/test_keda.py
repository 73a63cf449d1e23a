"""KEDA on the real cluster (docs/kubernetes.md, "The HPA arithmetic"):
KEDA, built here and installed by cluster/keda.sh, scales the workers on
the length of the burn queue.

The plain HPA of surge-worker is deleted and the keda overlay deployed
(test/cluster/keda: keda/component on top of what `make test-cluster`
deploys, the scale-down shortened as for the plain HPA); KEDA then makes
and owns the only HPA of the workers, keda-hpa-surge-worker. A burst of
burns is posted; the test reads that HPA every 2 s and checks that

1. its external metric, the burn queue as KEDA's Redis scaler reads it
   (logged in as the ACL user `keda`, which may only LLEN that list), is
   above its target of 2 waiting burns per worker, and the HPA asks for
   ceil(LLEN / 2) workers: the queue, not only the CPU, drives it;
2. it takes the workers from 2 to at least 4 within one HPA sync (15 s)
   plus KEDA's polling interval (15 s) of the burst, with a margin;
3. every burn succeeds, and once the queue is empty it takes the workers
   back to the minimum, 2;
4. reads held up by a lock on `items` (the queue grows, the CPU does not)
   add no worker: the read queue is deliberately no trigger (more workers
   would only add connections to the database that holds them up), and
   every read succeeds once the lock goes.

Afterwards the ScaledObject is deleted and test/cluster/overlay deployed
again: the plain HPA is back and surge at rest, whatever happened.

SURGE_TEST_KEDA_BURNS and SURGE_TEST_KEDA_BURN_SECONDS size the burst
(default 10 burns of 15 s: 8 wait at first, so KEDA asks for 4 workers);
SURGE_TEST_KEDA_READS the reads held up (default 60)."""
import math
import subprocess
import time

import pytest

from clusterlib import DATA_NS, NS, ROOT, env_int, kc, kc_json, log, wait_at_rest, wait_until
from surgekit import kube
from surgekit.api import SurgeApi

BURNS = env_int("SURGE_TEST_KEDA_BURNS", 10)
BURN_SECONDS = env_int("SURGE_TEST_KEDA_BURN_SECONDS", 15)
READS = env_int("SURGE_TEST_KEDA_READS", 60)
KEDA_HPA = "keda-hpa-surge-worker"
POLLING, HPA_SYNC, MARGIN = 15, 15, 15   # s: keda/component/scaledobject.yaml, the controller-manager's default, slack
PER_WORKER = 2                           # the burn trigger's listLength


def deploy(overlay):
    log(f"$ cluster/deploy.sh {overlay}")
    r = subprocess.run([str(ROOT / "cluster/deploy.sh"), overlay], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, f"cluster/deploy.sh {overlay} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"


def scaled_object_ready():
    so = kc_json("get", "scaledobject", "surge-worker", "-n", NS)
    conds = {c["type"]: c["status"] for c in so.get("status", {}).get("conditions", [])}
    return conds.get("Ready") == "True" and so


def keda_hpa():
    """(current replicas, desired replicas, burn-queue metric per pod, CPU %)
    of the HPA that KEDA made; None for a figure it does not report yet."""
    hpa = kc_json("get", "hpa", KEDA_HPA, "-n", NS)
    st = hpa.get("status", {})
    queue = cpu = None
    for m in st.get("currentMetrics") or []:
        if m["type"] == "External":
            queue = quantity(m["external"]["current"].get("averageValue") or m["external"]["current"].get("value"))
        elif m["type"] == "Resource" and m["resource"]["name"] == "cpu":
            cpu = m["resource"]["current"].get("averageUtilization")
    return st.get("currentReplicas"), st.get("desiredReplicas"), queue, cpu


def final_statuses(redis, ids, what, timeout):
    """The jobs' statuses in Redis once every one has finished."""
    def all_done():
        st = redis.pipeline([("HGET", f"surge:job:{i}", "status") for i in ids])
        return st if all(x in ("succeeded", "failed", "dead") for x in st) else None
    return wait_until(what, all_done, timeout, interval=3)


def quantity(q):
    """A Kubernetes quantity as KEDA reports a list length: "7", "3500m"."""
    if q is None:
        return None
    return int(q[:-1]) / 1000 if q.endswith("m") else float(q)


@pytest.fixture(scope="module")
def keda(redis):
    """The keda overlay in place of the plain HPA, for this file's tests; put back after."""
    wait_at_rest(redis)
    if kc("get", "deployment", "keda-operator", "-n", "keda", check=False).returncode != 0:
        pytest.fail("KEDA is not installed on the cluster: cluster/keda.sh (make cluster-keda)")
    try:
        log("the plain HPA makes way for KEDA's: kubectl delete hpa surge-worker")
        kc("delete", "hpa", "surge-worker", "-n", NS, "--ignore-not-found")
        deploy("test/cluster/keda")
        so = wait_until("the ScaledObject Ready", scaled_object_ready, 120)
        assert so["status"].get("hpaName") == KEDA_HPA, so["status"]
        hpa = kc_json("get", "hpa", KEDA_HPA, "-n", NS)
        owners = [(o["kind"], o["name"]) for o in hpa["metadata"].get("ownerReferences", [])]
        assert owners == [("ScaledObject", "surge-worker")], owners
        wait_until("KEDA's HPA reading the burn queue", lambda: keda_hpa()[2] is not None, 120)
        yield so
    finally:
        log("back to the plain HPA: kubectl delete scaledobject surge-worker, then test/cluster/overlay")
        kc("delete", "scaledobject", "surge-worker", "-n", NS, "--ignore-not-found", "--wait=true", timeout=120)
        kc("delete", "triggerauthentication", "surge-redis-keda", "-n", NS, "--ignore-not-found")
        wait_until("KEDA's HPA gone", lambda: kc("get", "hpa", KEDA_HPA, "-n", NS, check=False).returncode != 0, 120)
        deploy("test/cluster/overlay")
        wait_at_rest(redis)


def test_keda_scales_the_workers_on_the_burn_queue(keda, redis, api):
    c = SurgeApi(f"http://127.0.0.1:{api.http_port}")
    current, desired, queue, _ = keda_hpa()
    assert (current, desired) == (2, 2), f"KEDA's HPA before the burst: {current}/{desired}"
    assert queue == 0, f"the burn queue metric before the burst: {queue}"

    ids = [c.submit("burn", {"seconds": BURN_SECONDS})["id"] for _ in range(BURNS)]
    t0 = time.monotonic()
    log(f"posted {BURNS} burns of {BURN_SECONDS} s")
    samples, up = [], None
    deadline = t0 + POLLING + HPA_SYNC + MARGIN
    while up is None and time.monotonic() < deadline + 60:
        llen = int(redis.call("LLEN", "surge:queue:burn"))
        current, desired, queue, cpu = keda_hpa()
        t = time.monotonic() - t0
        samples.append((t, llen, current, desired, queue, cpu))
        log(f"+{t:4.0f} s  LLEN surge:queue:burn {llen:3}  HPA {current}/{desired}  "
            f"queue metric {queue} per pod (target {PER_WORKER})  cpu {cpu} %")
        if desired and desired >= 4:
            up = t
        else:
            time.sleep(2)
    assert up is not None, f"KEDA's HPA did not ask for 4 workers within {deadline + 60 - t0:.0f} s: {samples}"
    log(f"KEDA's HPA asked for {desired} workers {up:.0f} s after the burst")
    assert up <= POLLING + HPA_SYNC + MARGIN, \
        f"scale-up took {up:.0f} s, more than the polling interval plus one HPA sync ({POLLING + HPA_SYNC} s) + {MARGIN} s"
    # The queue asked for it: KEDA's metric above target, and the HPA's
    # answer at least what that metric alone asks for.
    # At the scale-up, the HPA's status holds the figures of the sync that
    # decided it: the burn queue per pod and the replicas it was computed for.
    t, llen, current, desired, q, cpu = samples[-1]
    assert q is not None and q > PER_WORKER, f"the queue metric was not past its target: {samples}"
    wants = math.ceil(q * current / PER_WORKER)
    # What the queue alone asks for, within the scale-up policy (100 % or
    # 4 pods a minute, whichever is more) and maxReplicaCount.
    assert desired >= min(wants, max(2 * current, current + 4), 10), (q, current, desired)

    # Every burn succeeds; with the queue empty, back to the minimum.
    statuses = final_statuses(redis, ids, "every burn finished", BURNS * BURN_SECONDS + 180)
    assert statuses == ["succeeded"] * BURNS, statuses
    peak = max(s[3] or 0 for s in samples)
    t_drained = time.monotonic() - t0
    wait_until("KEDA's HPA back to 2 workers", lambda: keda_hpa()[:2] == (2, 2), 240, interval=3)
    log(f"KEDA: 2 -> {peak} workers asked {up:.0f} s after the burst, drained after {t_drained:.0f} s, "
        f"back to 2 after {time.monotonic() - t0:.0f} s")


LOCK_MARK = "surge-test-keda-lock"


def psql(sql, timeout=60):
    """SQL as PostgreSQL's superuser, inside its pod (local socket)."""
    r = kc("exec", "-n", DATA_NS, "postgres-0", "--", "sh", "-c",
           'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v ON_ERROR_STOP=1 -tAc "$0"', sql, timeout=timeout)
    return r.stdout.strip()


def test_reads_held_up_by_postgres_add_no_worker(keda, redis, api):
    """What if the queue grows but the CPU does not? For reads, by design,
    no worker is added; the alert SurgeReadsWaiting points at PostgreSQL."""
    c = SurgeApi(f"http://127.0.0.1:{api.http_port}")
    wait_until("KEDA's HPA at 2 workers", lambda: keda_hpa()[:2] == (2, 2), 240, interval=3)
    hold = POLLING + HPA_SYNC + MARGIN + 20
    lock = subprocess.Popen(
        [kube.kubectl_path(), "exec", "-n", DATA_NS, "postgres-0", "--", "sh", "-c",
         f'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -c "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; '
         f'/* {LOCK_MARK} */ SELECT pg_sleep({hold}); COMMIT;"'],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until("the lock on items", lambda: psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = 'items' AND l.mode = 'AccessExclusiveLock' AND l.granted") == "1", 60)
        ids = [c.submit("read", {"item_id": 100 + n})["id"] for n in range(READS)]
        t0 = time.monotonic()
        log(f"posted {READS} reads while items is locked")
        samples = []
        while time.monotonic() - t0 < POLLING + HPA_SYNC + MARGIN:
            reads, burns = (int(v) for v in redis.pipeline([("LLEN", "surge:queue:read"),
                                                             ("LLEN", "surge:queue:burn")]))
            current, desired, queue, cpu = keda_hpa()
            samples.append((time.monotonic() - t0, reads, burns, current, desired, queue, cpu))
            log(f"+{samples[-1][0]:4.0f} s  LLEN surge:queue:read {reads:3}  burn {burns}  HPA {current}/{desired}  "
                f"burn-queue metric {queue}  cpu {cpu} %")
            time.sleep(3)
    finally:
        psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%{LOCK_MARK}%' "
             "AND pid <> pg_backend_pid()")
        try:
            lock.wait(30)
        except subprocess.TimeoutExpired:
            lock.kill()
    # The reads waited, far more than the workers' slots...
    assert max(s[1] for s in samples) >= READS // 2, f"the reads did not wait: {samples}"
    # ...and no worker was added or asked for, through two polls and syncs.
    assert all(s[3] == 2 and s[4] == 2 for s in samples), f"KEDA's HPA moved for reads: {samples}"
    assert all(s[5] == 0 for s in samples if s[5] is not None), samples

    statuses = final_statuses(redis, ids, "every read finished", 240)
    assert statuses == ["succeeded"] * READS, statuses
    log(f"{READS} reads held up by a lock: the read queue peaked at {max(s[1] for s in samples)}, "
        f"KEDA's HPA stayed at 2 (CPU at most {max((s[6] or 0) for s in samples)} %); all succeeded "
        f"{time.monotonic() - t0:.0f} s after they were posted")
