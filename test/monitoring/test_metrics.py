"""GET /metrics of both binaries: promtool has nothing to say about it, and
it exports every metric docs/architecture.md lists, with its type and labels."""
import re
import subprocess

import helpers
from conftest import ROOT, require
from surgekit import promtext


def promtool_check(text):
    r = subprocess.run([require("promtool"), "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=30)
    return r.returncode, (r.stdout + r.stderr).strip()


def exercised(surge):
    """An api and a worker that have answered requests and run both job types."""
    api = surge.api()
    worker = surge.worker()
    ids = [helpers.post_job(api.http_port, "/jobs/read", {"item_id": 42}),
           helpers.post_job(api.http_port, "/jobs/read", {"item_id": 999999}),
           helpers.post_job(api.http_port, "/jobs/burn", {"seconds": 1})]
    helpers.http(api.http_port, "GET", "/jobs/nope")
    helpers.http(api.http_port, "POST", "/jobs", {"type": "mine"})
    for i in ids:
        helpers.poll_job(api.http_port, i, timeout=30)
    return api, worker


def metrics_of(proc):
    r = helpers.http(proc.admin_port, "GET", "/metrics")
    assert r.status == 200, r
    assert r.header("content-type").startswith("text/plain"), r
    return r.body.decode()


def test_promtool_finds_nothing_to_say(surge):
    api, worker = exercised(surge)
    for proc in (api, worker):
        text = metrics_of(proc)
        code, out = promtool_check(text)
        assert code == 0 and out == "", f"{proc.name}: promtool check metrics said:\n{out}"


def test_the_check_can_fail():
    code, out = promtool_check("# TYPE surge_bad counter\nsurge_bad 1\n")
    assert code != 0 or out, "promtool should complain about a counter without _total"


def documented_metrics():
    doc = (ROOT / "docs/architecture.md").read_text()
    section = doc[doc.index("## Metrics", doc.index("# Project specifics")):]
    section = section[:section.index("\n## ", 5)]
    found = {}
    for name, labels in re.findall(r"`(surge_[a-z_]+)(?:\{([a-z_,]+)\})?`", section):
        found[name] = set(labels.split(",")) if labels else set()
    assert len(found) >= 11, f"docs/architecture.md lists only {sorted(found)}"
    return found


API_ONLY = {"surge_jobs_enqueued_total"}
BOTH = {"surge_http_requests_total", "surge_http_request_duration_seconds", "surge_dependency_up",
        "surge_queue_depth", "surge_retry_depth", "surge_dead_depth", "surge_http_connections",
        "surge_http_connections_refused_total", "surge_http_accept_errors_total"}
# The HTTP servers each binary runs, as the connection metrics label them.
SERVERS = {"api": {"api", "admin"}, "worker": {"admin"}}


def test_every_documented_metric_is_exported(surge):
    api, worker = exercised(surge)
    texts = {"api": metrics_of(api), "worker": metrics_of(worker)}
    doc = documented_metrics()
    for name, labels in doc.items():
        where = ["api"] if name in API_ONLY else ["api", "worker"] if name in BOTH else ["worker"]
        for w in where:
            fams = promtext.families(texts[w])
            assert name in fams, f"{name} is documented but the {w} does not export it"
            samples = [(n, l) for n, l, _ in promtext.parse(texts[w])
                       if n == name or n.startswith(name + "_")]
            assert samples, f"{name} has no sample on the {w}"
            for n, l in samples:
                assert set(l) - {"le"} == labels, f"{w} {n} labels {sorted(l)}, documented {sorted(labels)}"
    for w in ("api", "worker"):
        samples = promtext.parse(texts[w])
        servers = {l["server"] for n, l, _ in samples if n == "surge_http_connections"}
        assert servers == SERVERS[w], f"{w}: surge_http_connections of {sorted(servers)}"
        types = {l["type"] for n, l, _ in samples if n == "surge_queue_depth"}
        assert types == {"read", "burn"}, f"{w}: surge_queue_depth of {sorted(types)}"
    for w in ("api", "worker"):
        fams = promtext.families(texts[w])
        for p in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                  "process_start_time_seconds"):
            assert p in fams, f"{w} lacks {p}"
