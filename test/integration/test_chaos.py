"""Dependencies failing and hostile clients: Redis restarted (append-only
file on) and crashed (as production runs it), PostgreSQL restarted under
load, Redis frozen, slow clients, oversized bodies and headers, thousands of
idle connections. No accepted job is lost, no request hangs, both binaries
recover by themselves."""

import json
import resource
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from helpers import (LOOPBACK, Client, ConnectionClosed, assert_error, http, poll_job, post_job,
                     queued, read_response)
from reliability import (PostgresDown, Resp, Submitter, TableLock, assert_invariants,
                         assert_nothing_left, down_with, metric, poll_until, readyz,
                         wait_all_finished)


def _ready(proc):
    return readyz(proc)[0] == 200


# --------------------------------------------------------------------------
# Redis


def test_redis_restart_under_load(surge, redis):
    """Jobs posted at 100 a second; Redis stopped for 3 s (SIGTERM, so the
    append-only file is complete) and started again on the same port."""
    api = surge.api(SURGE_REDIS_TIMEOUT_MS=500)
    workers = [surge.worker(SURGE_REDIS_TIMEOUT_MS=500) for _ in range(2)]
    for p in [api, *workers]:
        poll_until(lambda: _ready(p), 15, what=f"{p.name} ready")
    sub = Submitter(api.http_port, total=1200, rate=100, threads=4, burn_every=100,
                    burn_seconds=1, seed=3).start()
    poll_until(lambda: sub.count() >= 300, 20, what="300 jobs accepted")

    redis.stop()
    t_down = time.monotonic()
    # While Redis is away: a prompt 503 with Retry-After, never a hang.
    t0 = time.monotonic()
    r = http(api.http_port, "POST", "/jobs/read", {"item_id": 1}, timeout=10)
    took_503 = time.monotonic() - t0
    assert_error(r, 503, "unavailable")
    assert (r.header("retry-after") or "").isdigit(), r
    assert took_503 < 2, f"503 took {took_503:.2f} s"
    for p in [api, *workers]:
        body = poll_until(lambda: down_with(p, "redis"), 10,
                          what=f"{p.name} /readyz to name redis as down")
        assert body["status"] != "ok", body
        assert http(p.admin_port, "GET", "/healthz", timeout=5).status == 200
    # Down until the clients have felt it: posts refused again and again.
    poll_until(lambda: sum(sub.refused.values()) >= 30, 30,
               what="30 posts refused while Redis is down")
    outage = time.monotonic() - t_down

    redis.start()
    t_up = time.monotonic()
    back = {}
    for p in [api, *workers]:
        poll_until(lambda: _ready(p), 20, what=f"{p.name} to reconnect to Redis by itself")
        back[p.name + str(p.pid)] = time.monotonic() - t_up
    sub.join()
    resp = Resp(redis.port)
    ids = sub.ids()
    states = wait_all_finished(resp, ids, timeout=90)
    assert_nothing_left(resp)
    assert sub.count() == 1200, (sub.count(), sub.refused)
    assert_invariants(resp)
    print(f"\nredis restart after {outage:.1f} s: {len(ids)} jobs accepted, all {len(states)} "
          "succeeded, 0 lost; "
          f"{sum(sub.refused.values())} posts refused while Redis was away ({sub.refused}), "
          f"slowest refusal {sub.slowest_refusal:.2f} s, {sub.errors} connection errors; "
          f"ready again after {', '.join(f'{v:.2f} s' for v in back.values())}")
    assert set(sub.refused) <= {503}, sub.refused
    assert sub.slowest_refusal < 2, sub.slowest_refusal


def test_an_accepted_job_survives_a_crash_of_redis(production):
    """Redis run as production runs it (its redis.conf: appendfsync always;
    ACL users with passwords; the database in the URL) is killed with SIGKILL
    while jobs are posted at 150 a second, and started again: every job
    answered 202, before the crash too, is there and runs."""
    redis = production.redis
    api = production.api(SURGE_REDIS_TIMEOUT_MS=1000)
    workers = [production.worker(SURGE_REDIS_TIMEOUT_MS=1000) for _ in range(2)]
    for p in [api, *workers]:
        poll_until(lambda: _ready(p), 15, what=f"{p.name} ready")
    sub = Submitter(api.http_port, total=1500, rate=150, threads=4, seed=13).start()
    poll_until(lambda: sub.count() >= 400, 30, what="400 jobs accepted")
    redis.kill()
    before = sub.ids()  # answered 202 before the crash (and maybe a few during it)
    poll_until(lambda: sub.refused.get(503, 0) >= 30, 30,
               what="30 posts refused while Redis is down")
    redis.start()
    for p in [api, *workers]:
        poll_until(lambda: _ready(p), 30, what=f"{p.name} to reconnect to Redis by itself")
    sub.join()
    resp = Resp.of(redis)
    ids = sub.ids()
    assert len(ids) == 1500, (len(ids), sub.refused)
    hashes = resp.hashes([f"surge:job:{i}" for i in ids])
    lost = [i for i, h in zip(ids, hashes) if "type" not in h]
    assert not lost, (f"{len(lost)} of {len(ids)} jobs answered 202 are gone after the crash "
                      f"({len([i for i in lost if i in before])} of them before it): {lost[:5]}")
    wait_all_finished(resp, ids, timeout=90)
    assert_nothing_left(resp)
    assert_invariants(resp)
    print(f"\nredis SIGKILL: {len(before)} jobs accepted before the crash, {len(ids)} in all, "
          f"every one there after the restart and succeeded; {sum(sub.refused.values())} posts "
          f"refused while it was down")


def test_frozen_redis_answers_503_within_the_deadline(surge, redis):
    """A Redis that accepts nothing (SIGSTOP) must not hang requests: each one
    gets 503 once SURGE_REDIS_TIMEOUT_MS is over; when Redis thaws, the api
    carries on by itself."""
    api = surge.api(SURGE_REDIS_TIMEOUT_MS=500)
    poll_until(lambda: _ready(api), 15, what="api ready")
    redis.proc.send_signal(signal.SIGSTOP)
    try:
        answers, errors = [], []

        def post():
            t0 = time.monotonic()
            try:
                r = http(api.http_port, "POST", "/jobs/read", {"item_id": 2}, timeout=10)
                answers.append((r, time.monotonic() - t0))
            except (OSError, ConnectionClosed) as e:
                errors.append(e)

        threads = [threading.Thread(target=post) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        assert not errors, errors
        for r, took in answers:
            assert_error(r, 503, "unavailable")
            assert r.header("retry-after") == "1", r
            assert took < 0.5 + 2.0, f"503 after {took:.2f} s with a 500 ms deadline"
        assert len(answers) == 10
        assert http(api.admin_port, "GET", "/healthz", timeout=5).status == 200
        poll_until(lambda: down_with(api, "redis"), 10, what="/readyz to name redis as down")
    finally:
        redis.proc.send_signal(signal.SIGCONT)
    poll_until(lambda: _ready(api), 20, what="the api to carry on once Redis thaws")
    r = http(api.http_port, "POST", "/jobs/read", {"item_id": 3}, timeout=10)
    assert r.status == 202, r


# --------------------------------------------------------------------------
# PostgreSQL


def test_postgres_restart_under_load(surge, redis, postgres):
    """Reads posted at 100 a second; PostgreSQL stopped and started again:
    the workers take no read meanwhile, the reads wait in their queue, and all
    succeed; only the reads in flight when it stopped fail and are retried,
    none uses up its (default 5) attempts."""
    api = surge.api()
    concurrency = 4
    workers = [surge.worker(SURGE_WORKER_READ_CONCURRENCY=concurrency) for _ in range(2)]
    for p in workers:
        poll_until(lambda: _ready(p), 15, what="worker ready")
    resp = Resp(redis.port)
    sub = Submitter(api.http_port, total=1000, rate=100, threads=4, seed=5).start()
    poll_until(lambda: sub.count() >= 200, 20, what="200 jobs accepted")
    with PostgresDown(postgres):
        t_down = time.monotonic()
        for p in workers:
            poll_until(lambda: down_with(p, "postgres"), 10,
                       what="worker /readyz to name postgres as down")
            assert http(p.admin_port, "GET", "/healthz", timeout=5).status == 200
        # Down until 100 reads wait in the queue.
        poll_until(lambda: resp.call("LLEN", "surge:queue:read") >= 100, 30,
                   what="reads to wait in the queue while PostgreSQL is away")
        outage = time.monotonic() - t_down
    t_up = time.monotonic()
    back = []
    for p in workers:
        poll_until(lambda: _ready(p), 30, what="worker ready again after PostgreSQL restart")
        back.append(time.monotonic() - t_up)
    sub.join()
    ids = sub.ids()
    assert len(ids) == 1000, (len(ids), sub.refused)
    states = wait_all_finished(resp, ids, timeout=60)
    assert_nothing_left(resp)
    assert_invariants(resp)
    retried = [h for h in states.values() if int(h["attempts"]) > 1]
    assert len(retried) <= concurrency * len(workers), \
        (f"{len(retried)} reads failed, more than the {concurrency * len(workers)} the workers "
         f"can hold at once: reads were taken while PostgreSQL was away")
    assert all("error" not in h for h in states.values()), "a succeeded job kept its error"
    n_retry = sum(metric(p.admin_port, "surge_jobs_finished_total", type="read",
                         outcome="retry") for p in workers)
    assert n_retry == sum(int(h["attempts"]) - 1 for h in states.values())
    print(f"\npostgres restart after {outage:.1f} s: {len(ids)} reads accepted, all succeeded, "
          f"0 lost; {len(retried)} were in flight when it stopped and needed another attempt; "
          f"workers ready again after {', '.join(f'{b:.2f} s' for b in back)}")


def test_read_in_flight_when_its_connection_is_killed(surge, redis, postgres):
    """A read waiting on PostgreSQL (held by a table lock) whose server
    connection is terminated, as in a restart: the worker fails it with a
    readable error, retries it, keeps running, and the read succeeds once the
    lock is gone."""
    api = surge.api()
    w = surge.worker(SURGE_MAX_ATTEMPTS=10)
    poll_until(lambda: _ready(w), 15, what="worker ready")
    # Every connection of the pool has prepared its SELECT: a PREPARE made
    # under the lock would wait on it too and count as a second read.
    poll_until(lambda: int(postgres.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle' "
        "AND query LIKE 'SELECT row_to_json%'")) >= 4, 15,
        what="the worker's 4 PostgreSQL connections prepared")
    resp = Resp(redis.port)
    with TableLock(postgres) as lock:
        job = post_job(api.http_port, "/jobs/read", {"item_id": 12})
        lock.wait_for_reads(1)
        assert lock.kill_waiting_reads() == 1
        failed = poll_until(
            lambda: (lambda h: h if h.get("error") else None)(resp.hgetall(f"surge:job:{job}")),
            15, what="the read to fail once its connection is gone")
        assert w.running(), f"the worker died:\n{w.stderr()[-4000:]}"
    err = json.loads(failed["error"])
    assert err["code"] == "database_unavailable", failed
    assert all(ch.isprintable() or ch in "\n\t" for ch in err["message"]) \
        and "\ufffd" not in err["message"] and len(err["message"]) > 3, \
        f"the error message is not text: {err['message']!r}"
    done = poll_job(api.http_port, job, statuses=("succeeded", "dead"), timeout=40)
    assert done["status"] == "succeeded" and done["attempts"] >= 2, done
    print(f"\nread whose connection was killed: {err['message'].strip()!r}, "
          f"succeeded at attempt {done['attempts']}")


# --------------------------------------------------------------------------
# bad input


def test_slow_clients_get_408_at_the_deadline(surge):
    """Clients that trickle their headers a byte at a time, forever, get 408 at
    the headers deadline (which activity does not extend), while others are
    served at once."""
    timeout_s = 4
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=timeout_s)
    head = b"POST /jobs/read HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 500
    results, errors = [], []
    trickling = threading.Semaphore(0)

    def slowloris():
        try:
            with Client(api.http_port, timeout=timeout_s + 8) as c:
                t0 = time.monotonic()
                c.sock.settimeout(0.25)
                i = 0
                while True:
                    try:
                        c.send(head[i:i + 1])
                    except OSError:
                        break  # the server closed after answering
                    if i == 0:
                        trickling.release()
                    i = min(i + 1, len(head) - 1)
                    try:
                        if c.sock.recv(1, socket.MSG_PEEK):
                            break
                    except (socket.timeout, TimeoutError):
                        pass
                    if time.monotonic() - t0 > timeout_s + 6:
                        break
                c.sock.settimeout(5)
                results.append((read_response(c.f), time.monotonic() - t0))
        except (OSError, ConnectionClosed, AssertionError) as e:
            errors.append(e)

    poll_until(lambda: _ready(api), 15, what="api ready")
    threads = [threading.Thread(target=slowloris) for _ in range(50)]
    for t in threads:
        t.start()
    for _ in threads:
        assert trickling.acquire(timeout=10), "a slow client could not connect"
    assert http(api.admin_port, "GET", "/healthz", timeout=10).status == 200
    assert http(api.http_port, "POST", "/jobs/read", {"item_id": 4}, timeout=10).status == 202
    assert not results, "ordinary requests were answered only after slow clients timed out"
    for t in threads:
        t.join(timeout_s + 15)
    assert not errors, errors[:3]
    assert len(results) == 50
    for r, took in results:
        assert_error(r, 408, "request_timeout")
        assert timeout_s - 0.5 <= took < timeout_s + 3, f"408 after {took:.2f} s"
    print(f"\n50 slow clients: 408 after {min(t for _, t in results):.2f}-"
          f"{max(t for _, t in results):.2f} s (deadline {timeout_s} s)")


def test_oversized_body_is_refused_without_being_read(surge, redis):
    """A client that declares 10 GB and keeps sending gets 413 after its first
    chunk, and the server closes the connection soon instead of reading on."""
    api = surge.api(SURGE_MAX_BODY_BYTES=4096)
    with Client(api.http_port, timeout=10) as c:
        c.send(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 10000000000\r\n\r\n" + b"{" + b" " * 65535)
        r = read_response(c.f)
        assert_error(r, 413, "payload_too_large")
        sent, t0 = 65536, time.monotonic()
        chunk = b" " * 65536
        c.sock.settimeout(1)
        closed = False
        while time.monotonic() - t0 < 10:
            try:
                c.sock.sendall(chunk)
                sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            except (socket.timeout, TimeoutError):
                continue  # the server no longer reads: it is lingering or gone
        took = time.monotonic() - t0
    assert closed, f"the connection stayed open for 10 s after the 413 ({sent} bytes sent)"
    print(f"\n413 after the first 64 KiB of a 10 GB body; connection closed {took:.2f} s later "
          f"after {sent / 1e6:.1f} MB")
    assert queued(redis) == []
    assert http(api.http_port, "POST", "/jobs/read", {"item_id": 5}).status == 202


def test_endless_headers_get_431_at_once(surge):
    """Headers that never end are refused as soon as they pass 8 KiB."""
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=30)
    with Client(api.http_port, timeout=10) as c:
        c.send(b"GET /jobs/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        t0 = time.monotonic()
        got = None
        for n in range(64):  # up to 64 KiB, never the blank line
            try:
                c.send(b"X-Pad-%03d: " % n + b"p" * 1000 + b"\r\n")
            except OSError:
                break
            c.sock.settimeout(0.05)
            try:
                if c.sock.recv(1, socket.MSG_PEEK):
                    got = n
                    break
            except (socket.timeout, TimeoutError):
                pass
        c.sock.settimeout(5)
        r = read_response(c.f)
        assert_error(r, 431, "headers_too_large")
        assert time.monotonic() - t0 < 5
        assert got is not None and got <= 12, f"answered after {got} KiB of headers"
    assert http(api.admin_port, "GET", "/healthz").status == 200


def test_thousands_of_idle_connections(surge):
    """2 000 connections that send nothing (or half a request) do not stop
    /healthz, /readyz or POST /jobs from answering at once."""
    n_public, n_admin = 1500, 500
    need = n_public + n_admin + 500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.fail(f"RLIMIT_NOFILE hard limit {hard} is below the {need} this test needs")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    try:
        # The api inherits the raised limit; its connection limit is above
        # what the test opens (past it, connections would be refused).
        api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=60, SURGE_IDLE_TIMEOUT_SECONDS=60,
                        SURGE_MAX_CONNECTIONS=n_public + 100)
        poll_until(lambda: _ready(api), 15, what="api ready")
        limit = [line for line in Path(f"/proc/{api.pid}/limits").read_text().splitlines()
                 if line.startswith("Max open files")][0]
        assert int(limit.split()[3]) >= need, limit
        socks = []
        try:
            for i in range(n_public + n_admin):
                port = api.http_port if i < n_public else api.admin_port
                s = socket.create_connection((LOOPBACK, port), timeout=5)
                if i % 3 == 0:
                    s.sendall(b"GET /jobs/x HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # half a request
                socks.append(s)
            fds = poll_until(
                lambda: (lambda n: n if n >= n_public + n_admin else None)(
                    len(list(Path(f"/proc/{api.pid}/fd").iterdir()))),
                10, what="the api to accept every connection")
            worst = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                assert http(api.admin_port, "GET", "/healthz", timeout=2).status == 200
                worst = max(worst, time.monotonic() - t0)
            assert readyz(api)[0] == 200
            r = http(api.http_port, "POST", "/jobs/read", {"item_id": 6}, timeout=2)
            assert r.status == 202, r
            assert worst < 1.0, f"/healthz took {worst:.2f} s with {len(socks)} idle connections"
            assert metric(api.admin_port, "process_open_fds") >= n_public + n_admin
        finally:
            for s in socks:
                s.close()
        poll_until(lambda: len(list(Path(f"/proc/{api.pid}/fd").iterdir())) < 100, 10,
                   what="the api to close the connections its clients closed")
        assert http(api.admin_port, "GET", "/healthz").status == 200
        print(f"\n{len(socks)} idle connections ({fds} fds in the api): /healthz worst "
              f"{worst * 1000:.1f} ms")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("body", [
    # A parameter name the error message quotes, cut at 40 bytes in the
    # middle of a two-byte character.
    '{"a' + "\u00e9" * 25 + '":1}',
    '{"type":"read","params":{"' + "\u20ac" * 20 + '":1}}',
    # Bytes that are not UTF-8 at all.
    b'{"\xff\xfe":1}',
], ids=["two-byte-char-cut", "three-byte-char-cut", "not-utf8"])
def test_error_answers_are_utf8_json(api, body):
    """Whatever the client sends, the answer is JSON, and JSON is UTF-8
    (RFC 8259): an error that quotes the client's input must not cut a
    character in two or pass invalid bytes on."""
    data = body if isinstance(body, bytes) else body.encode()
    r = http(api.http_port, "POST", "/jobs/read" if b'"type"' not in data else "/jobs", data)
    assert 400 <= r.status < 500, r
    try:
        text = r.body.decode("utf-8")
    except UnicodeDecodeError as e:
        pytest.fail(f"{r.status} answer is not UTF-8 ({e}): {r.body!r}")
    assert_error(r, r.status)
    assert json.loads(text)
