"""tools/surgectl against real servers: every command, its --help, and a
clear message for every bad argument."""
import json
import signal
import subprocess
import sys
import time

import pytest

import helpers
from conftest import ROOT

SURGECTL = ROOT / "tools/surgectl"
COMMANDS = ["submit", "stats", "inspect", "requeue-dead", "load"]


def run(*args, timeout=60):
    return subprocess.run([sys.executable, str(SURGECTL), *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def addr(api=None, redis=None):
    out = []
    if api:
        out += ["--api", f"http://127.0.0.1:{api.http_port}"]
    if redis:
        out += ["--redis", redis.url]
    return out


def test_help_for_the_tool_and_every_command():
    r = run("--help")
    assert r.returncode == 0
    for c in COMMANDS:
        assert c in r.stdout
        h = run(c, "--help")
        assert h.returncode == 0 and f"usage: surgectl {c}" in h.stdout, h.stderr
        assert len(h.stdout.splitlines()) > 5


@pytest.mark.parametrize("args,message", [
    ([], "required: COMMAND"),
    (["nope"], "invalid choice: 'nope'"),
    (["submit"], "the following arguments are required: type"),
    (["submit", "mine"], "invalid choice: 'mine'"),
    (["submit", "read"], "a read job needs --item-id"),
    (["submit", "read", "--item-id", "x"], "--item-id must be a whole number, not 'x'"),
    (["submit", "read", "--item-id", "0"], "--item-id must be at least 1, not 0"),
    (["submit", "read", "--seconds", "3", "--item-id", "1"], "--seconds is for burn jobs"),
    (["submit", "burn", "--item-id", "3"], "--item-id is for read jobs"),
    (["submit", "burn", "--seconds", "99999"], "--seconds must be between 1 and 3600"),
    (["submit", "read", "--params", "{"], "--params is not valid JSON"),
    (["submit", "read", "--params", "[1]"], "--params must be a JSON object"),
    (["submit", "read", "--params", "{}", "--item-id", "2"], "not both"),
    (["submit", "read", "--item-id", "1", "--timeout", "-1"], "--timeout must be more than 0"),
    (["submit", "read", "--item-id", "1", "--idempotency-key", "a b"], "--idempotency-key takes"),
    (["submit", "read", "--item-id", "1", "--retry-for", "-1"], "--retry-for must be at least 0"),
    (["--api", "ftp://x", "stats"], "only http:// is supported"),
    (["--api", "http://127.0.0.1:99999", "stats"], "not a number between 1 and 65535"),
    (["--redis", "http://127.0.0.1", "stats"], "must look like redis://"),
    (["--redis", "redis://127.0.0.1:6379/x", "stats"], "the database after the / must be a number"),
    (["stats", "--interval", "0"], "--interval must be"),
    (["stats", "--metrics", "127.0.0.1:1/metrics"], "without a path"),
    (["inspect"], "required: id"),
    (["requeue-dead", "--limit", "-3"], "--limit must be at least 1"),
    (["load", "--rate", "abc"], "--rate must be a number"),
    (["load", "--rate", "0"], "--rate must be more than 0"),
    (["load", "--duration", "nan"], "--duration must be more than 0"),
    (["load", "--mix", "read=1,write=2"], "--mix takes read=N,burn=M"),
    (["load", "--mix", "read=0,burn=0"], "--mix needs a positive weight"),
    (["load", "--mix", "read=-1"], "must not be negative"),
    (["load", "--count", "0"], "--count must be between 1 and 1000000"),
    (["load", "--rate", "0.01", "--duration", "1"], "makes no job"),
])
def test_bad_arguments_are_explained(args, message):
    r = run(*args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_unreachable_servers_are_named():
    port = helpers.free_port()
    r = run("--api", f"127.0.0.1:{port}", "submit", "read", "--item-id", "1")
    assert r.returncode == 1 and f"127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
    r = run("--redis", f"redis://127.0.0.1:{port}/0", "stats", "--once")
    assert r.returncode == 1 and f"cannot reach Redis at 127.0.0.1:{port}" in r.stderr


def test_submit_waits_and_prints_the_result(surge, postgres):
    api = surge.api()
    w = surge.worker()
    r = run(*addr(api), "submit", "read", "--item-id", "42")
    assert r.returncode == 0, r.stderr
    assert "succeeded" in r.stdout and json.dumps(postgres.item_json(42)) in r.stdout
    r = run(*addr(api), "submit", "burn", "--seconds", "2")
    assert r.returncode == 0, r.stderr
    assert "running" in r.stderr, "no progress line while the burn ran"
    assert "[" in r.stderr and "/2 s" in r.stderr, r.stderr
    r = run(*addr(api), "submit", "read", "--params", '{"item_id": 999999}', "--json")
    assert r.returncode == 1
    job = json.loads(r.stdout)
    assert job["status"] == "failed" and job["error"]["code"] == "not_found"
    r = run(*addr(api), "submit", "read", "--item-id", "5", "--no-wait")
    assert r.returncode == 0 and len(r.stdout.strip()) >= 20
    helpers.poll_job(api.http_port, r.stdout.strip())
    assert w.running()


def test_submit_sends_an_idempotency_key(surge, redis):
    api = surge.api()  # no worker: the jobs stay queued
    r = run(*addr(api), "submit", "read", "--item-id", "3", "--no-wait")
    assert r.returncode == 0, r.stderr
    first = r.stdout.strip()
    keys = redis.lines("KEYS", "surge:idem:*")
    assert len(keys) == 1 and redis.cli("GET", keys[0]).startswith(first + " "), keys
    # The same key and job again: the same job, not a second one.
    key = keys[0].split(":", 2)[2]
    r = run(*addr(api), "submit", "read", "--item-id", "3", "--no-wait", "--idempotency-key", key)
    assert r.returncode == 0 and r.stdout.strip() == first, (r.stdout, r.stderr)
    r = run(*addr(api), "submit", "read", "--item-id", "4", "--no-wait", "--idempotency-key", key)
    assert r.returncode == 1 and "idempotency_key_reused" in r.stderr, r.stderr
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [first]


def test_submit_sends_again_after_a_503_and_makes_one_job(surge, redis):
    """Redis stalls: the api answers 503 after its deadline although Redis
    will queue the job once it wakes. surgectl sends the same key again and
    gets that job: one job in the queue, its id printed."""
    api = surge.api(SURGE_REDIS_TIMEOUT_MS=300)
    helpers.wait_for(lambda: helpers.http(api.admin_port, "GET", "/readyz").status == 200, 15,
                     message="the api ready")
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        p = subprocess.Popen([sys.executable, str(SURGECTL), *addr(api), "submit", "burn",
                              "--seconds", "1", "--no-wait", "--retry-for", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        # Let it meet the stall: its first POST waits for the deadline, then 503.
        time.sleep(2)
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 0, err
    assert "503" in err and "same Idempotency-Key" in err, err
    job_id = out.strip()
    assert redis.lines("LRANGE", "surge:queue:burn", 0, -1) == [job_id], err


def test_submit_reports_what_the_api_refuses(surge):
    api = surge.api()
    r = run(*addr(api), "submit", "burn", "--seconds", "3000")
    assert r.returncode == 1 and "bad_params" in r.stderr, r.stderr


def test_submit_times_out_with_code_3(surge):
    api = surge.api()  # no worker: the job stays queued
    r = run(*addr(api), "submit", "read", "--item-id", "1", "--timeout", "1")
    assert r.returncode == 3 and "still queued" in r.stderr


def as_worker_user(redis):
    """The Redis address as the ACL user `worker` of the cluster
    (k8s/base/redis/users.acl.in, loaded into this server): the user
    docs/demo.md tells people to give surgectl on a cluster."""
    rules = next(l.split()[2:] for l in (ROOT / "k8s/base/redis/users.acl.in").read_text().splitlines()
                 if l.startswith("user worker "))
    rules = [">pw-of-worker" if r == "@WORKER_PASSWORD@" else r for r in rules]
    assert redis.cli("ACL", "SETUSER", "worker", "reset", *rules) == "OK"
    return f"redis://worker:pw-of-worker@127.0.0.1:{redis.port}/0"


@pytest.mark.parametrize("user", ["default", "worker"])
def test_stats_and_inspect(surge, redis, user):
    url = as_worker_user(redis) if user == "worker" else redis.url
    api = surge.api()
    w = surge.worker(SURGE_WORKER_BURN_CONCURRENCY=1, SURGE_WORKER_READ_CONCURRENCY=3)
    helpers.wait_for(lambda: redis.lines("KEYS", "surge:worker:*"), 10, message="a heartbeat")
    burn = helpers.post_job(api.http_port, "/jobs/burn", {"seconds": 3})
    helpers.poll_job(api.http_port, burn, statuses=("running",), timeout=10)
    waiting = [helpers.post_job(api.http_port, "/jobs/burn", {"seconds": 1}) for _ in (1, 2)]
    # The heartbeat says what the worker holds at its next beat (every second).
    helpers.wait_for(lambda: any('"in_flight":{"read":0,"burn":1}' in redis.cli("GET", k)
                                 for k in redis.lines("KEYS", "surge:worker:*")), 5,
                     message="the heartbeat to show the burn")
    r = run(*addr(api), "--redis", url, "stats", "--once", "--json",
            "--metrics", f"127.0.0.1:{api.admin_port},127.0.0.1:{w.admin_port}")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["queue"] == 2 and s["queues"] == {"read": 0, "burn": 2}
    assert s["processing"] == 1 and s["workers"] == 1
    assert s["dead"] == 0 and s["metrics_reached"] == 2
    if user == "default":
        assert s["in_flight"] == {"read": 0, "burn": 1}
        assert s["concurrency"] == {"read": 3, "burn": 1}
    else:  # the worker user may not GET: the heartbeats are counted, not read
        assert s["in_flight"] is None and s["concurrency"] is None
    r = run(*addr(api), "--redis", url, "stats", "--count", "2", "--interval", "0.3",
            "--metrics", f"127.0.0.1:{w.admin_port}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "read q" in lines[0] and "burn q" in lines[0] and "done/s" in lines[0] and len(lines) == 3
    if user == "default":
        assert " 0/3 " in lines[1] and " 1/1 " in lines[1], lines
    else:
        assert "n/a" in lines[1], lines
    r = run(*addr(api), "--redis", url, "inspect", waiting[-1])
    assert r.returncode == 0, r.stderr
    assert "status    queued" in r.stdout and "surge:queue:burn, 2 from the end" in r.stdout
    r = run(*addr(api), "--redis", url, "inspect", burn)
    assert r.returncode == 0, r.stderr
    assert "status    running" in r.stdout and f"surge:processing:" in r.stdout and "is alive" in r.stdout
    r = run(*addr(api), "inspect", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", "--no-redis")
    assert r.returncode == 1 and "does not know it" in r.stderr


@pytest.mark.parametrize("user", ["default", "worker"])
def test_requeue_dead_moves_atomically_and_resets(surge, redis, user):
    url = as_worker_user(redis) if user == "worker" else redis.url
    api = surge.api()
    ids = [helpers.post_job(api.http_port, "/jobs/read", {"item_id": i}) for i in (3, 4)]
    ids.append(helpers.post_job(api.http_port, "/jobs/burn", {"seconds": 1}))
    # Make them dead as a worker would: off the queue, on the dead list.
    for i, q in zip(ids, ("read", "read", "burn")):
        redis.cli("LMOVE", f"surge:queue:{q}", "surge:dead", "RIGHT", "LEFT")
        redis.cli("HSET", f"surge:job:{i}", "status", "dead", "attempts", "5",
                  "error", '{"code":"pg_unavailable","message":"x"}', "finished_at", "2026-01-01T00:00:00.000Z")
        redis.cli("EXPIRE", f"surge:job:{i}", "86400")
    redis.cli("LPUSH", "surge:dead", "01EXPIREDEXPIREDEXPIREDEXP")  # its hash is gone
    r = run("--redis", url, "requeue-dead", "--dry-run")
    assert r.returncode == 0 and "4 dead job(s)" in r.stdout and "expired" in r.stdout
    assert redis.cli("LLEN", "surge:dead") == "4"
    r = run("--redis", url, "requeue-dead", "--limit", "2")
    assert r.returncode == 0 and "requeued 2 job(s)" in r.stdout, r.stdout
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [ids[1], ids[0]]
    r = run("--redis", url, "requeue-dead")
    assert "requeued 1 job(s)" in r.stdout and "1 dead id(s) have no job data left" in r.stdout
    # Each back on the queue of its own type.
    assert redis.lines("LRANGE", "surge:queue:burn", 0, -1) == [ids[2]]
    assert redis.lines("LRANGE", "surge:queue:read", 0, -1) == [ids[1], ids[0]]
    assert redis.lines("LRANGE", "surge:dead", 0, -1) == ["01EXPIREDEXPIREDEXPIREDEXP"]
    for i in ids:
        h = redis.hgetall(f"surge:job:{i}")
        assert h["status"] == "queued" and h["attempts"] == "0" and "error" not in h
        assert redis.cli("TTL", f"surge:job:{i}") == "-1"
    surge.worker()
    for i in ids:
        assert helpers.poll_job(api.http_port, i)["status"] == "succeeded"
    r = run("--redis", url, "requeue-dead")
    assert "requeued 0 job(s)" in r.stdout


def test_load_is_bounded_and_reports(surge, redis):
    api = surge.api()
    r = run(*addr(api), "load", "--rate", "40", "--duration", "5", "--count", "30",
            "--mix", "read=2,burn=1", "--burn-seconds", "1", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert "sent 30, accepted 30" in r.stdout, r.stdout
    assert "p99" in r.stdout and "30/30 sent" in r.stderr
    reads, burns = (int(redis.cli("LLEN", f"surge:queue:{t}")) for t in ("read", "burn"))
    assert reads + burns == 30 and 0 < burns < 30, (reads, burns)
    r = run(*addr(api), "load", "--rate", "20", "--duration", "0.5")
    assert "sent 10, accepted 10" in r.stdout
