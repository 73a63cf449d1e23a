"""Fixtures of the tests on the real cluster (make test-cluster): the
cluster of cluster/ with surge deployed from test/cluster/overlay. Nothing
is skipped: a cluster that does not answer, or a surge that is not
deployed, fails every test with the command that fixes it.

Without KUBECONFIG, the project's cluster is used (build/cluster/kubeconfig
and the kubectl built with it)."""
import os
import time

import pytest

from clusterlib import (API_SEL, DATA_NS, NS, ROOT, WORKER_SEL, ClusterRedis, Failed, kc, kube, log, ready_pods,
                        wait_at_rest, wait_until)

_cluster_dir = ROOT / "build" / "cluster"
if not os.environ.get("KUBECONFIG") and (_cluster_dir / "kubeconfig").exists():
    os.environ["KUBECONFIG"] = str(_cluster_dir / "kubeconfig")
if (_cluster_dir / "bin" / "kubectl").exists() and not os.environ.get("KUBECTL"):
    os.environ["KUBECTL"] = str(_cluster_dir / "bin" / "kubectl")


@pytest.fixture(scope="session")
def cluster():
    """The cluster answers and surge is deployed and ready."""
    r = kc("get", "--raw", "/readyz", check=False, timeout=30)
    if r.returncode != 0:
        pytest.fail(f"the cluster does not answer (KUBECONFIG={os.environ.get('KUBECONFIG')}): "
                    f"{(r.stderr or r.stdout).strip()[:300]}\nstart it: make test-cluster KEEP_CLUSTER=1, "
                    "or make cluster && cluster/deploy.sh test/cluster/overlay")
    for ns, sts in ((DATA_NS, "redis"), (DATA_NS, "postgres")):
        if kc("get", "statefulset", sts, "-n", ns, check=False).returncode != 0:
            pytest.fail(f"surge is not deployed ({ns}/{sts} is missing): cluster/deploy.sh test/cluster/overlay")
    wait_until("surge's pods ready", lambda: all(ready_pods(ns, sel) for ns, sel in (
        (DATA_NS, "app.kubernetes.io/name=redis"), (DATA_NS, "app.kubernetes.io/name=postgres"),
        (NS, API_SEL), (NS, WORKER_SEL))), 300)
    return True


@pytest.fixture(scope="session")
def redis(cluster):
    r = ClusterRedis()
    yield r
    r.close()


@pytest.fixture(scope="session")
def api(cluster):
    """A port-forward to svc/surge-api (http_port, admin_port on 127.0.0.1)."""
    pf = kube.PortForward().start()
    yield pf
    pf.stop()


@pytest.fixture
def at_rest(redis):
    """Waits until surge is at rest before the test and again after it, so
    that each test starts from the same state whatever ran before."""
    wait_at_rest(redis)
    yield redis
    wait_at_rest(redis)


_dumped = [0.0]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    # Once per failure, not once per test that reports the same one.
    if rep.when == "call" and rep.failed and time.monotonic() - _dumped[0] > 60:
        dump_state()
        _dumped[0] = time.monotonic()
    return rep


def dump_state():
    """What a person needs to see after a failure, in the CI log."""
    log("----- state of the cluster after the failure -----")
    for args in (("get", "pods", "-A", "-o", "wide"), ("get", "hpa,deploy,sts", "-n", NS),
                 ("get", "events", "-A", "--sort-by=.lastTimestamp")):
        try:
            out = kc(*args, check=False, timeout=30).stdout.splitlines()
        except (Failed, ConnectionError) as e:
            out = [str(e)]
        print(f"$ kubectl {' '.join(args)}")
        print("\n".join(out[-40:]), flush=True)


def pytest_sessionstart(session):
    session.t0 = time.monotonic()


def pytest_terminal_summary(terminalreporter):
    """How long each test took, its fixtures' setup included (the scaling
    scenario runs in a fixture, once for all of its tests)."""
    terminalreporter.section("durations of the cluster tests (setup + call + teardown)")
    took, outcome = {}, {}
    for reps in terminalreporter.stats.values():
        for rep in reps:
            if getattr(rep, "when", None) in ("setup", "call", "teardown"):
                took[rep.nodeid] = took.get(rep.nodeid, 0.0) + rep.duration
                if rep.when == "call" or rep.failed:
                    outcome[rep.nodeid] = rep.outcome
    for nodeid, t in took.items():
        terminalreporter.write_line(f"{t:7.1f} s  {outcome.get(nodeid, '?'):6}  {nodeid}")
