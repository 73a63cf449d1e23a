"""Every error answer of the API: status, JSON body {"error":{"code","message"}}
with the documented code, the headers that go with it, and a process that
keeps serving afterwards."""

import json
import time

import pytest

from helpers import (QUEUES, Client, assert_error, http, poll_job, post_job, queued,
                     read_response, ConnectionClosed)


def still_serves(api, redis=None):
    r = http(api.admin_port, "GET", "/healthz", timeout=5)
    assert r.status == 200, r
    r = http(api.http_port, "POST", "/jobs/read", {"item_id": 1})
    assert r.status == 202, r
    if redis is not None:
        redis.cli("DEL", *QUEUES)


@pytest.mark.parametrize("path,body", [
    ("/jobs", "{bad"),
    ("/jobs", '{"type":"read",}'),
    ("/jobs", '{"type":"read","params":{"item_id":1}}}'),
    ("/jobs", '{"type":"read","params":{"item_id":1}'),
    ("/jobs/read", "item_id=1"),
    ("/jobs/burn", '{"seconds":2'),
])
def test_bad_json(api, redis, path, body):
    assert_error(http(api.http_port, "POST", path, body), 400, "bad_json")
    assert queued(redis) == []


@pytest.mark.parametrize("body", [
    {"type": "frobnicate", "params": {}},
    {"type": "READ", "params": {"item_id": 1}},
    {"type": "", "params": {"item_id": 1}},
])
def test_unknown_type(api, redis, body):
    assert_error(http(api.http_port, "POST", "/jobs", body), 400, "unknown_type")
    assert queued(redis) == []


@pytest.mark.parametrize("path,body", [
    ("/jobs/read", {"item_id": "abc"}),
    ("/jobs/read", {"item_id": "42"}),
    ("/jobs/read", {"item_id": 1.5}),
    ("/jobs/read", {"item_id": None}),
    ("/jobs/read", {"item_id": [1]}),
    ("/jobs/read", {}),
    ("/jobs", {"type": "read", "params": {"item_id": "x"}}),
    ("/jobs", {"type": "read", "params": {}}),
    ("/jobs/burn", {"seconds": -1}),
    ("/jobs/burn", {"seconds": 11}),
    ("/jobs/burn", {"seconds": "abc"}),
    ("/jobs/burn", {"seconds": 2.5}),
    ("/jobs", {"type": "burn", "params": {"seconds": 1000000}}),
])
def test_bad_params(surge, redis, path, body):
    api = surge.api(SURGE_BURN_MAX_SECONDS=10, SURGE_BURN_DEFAULT_SECONDS=5)
    assert_error(http(api.http_port, "POST", path, body), 400, "bad_params")
    assert queued(redis) == []


def test_burn_at_max_is_accepted(surge):
    api = surge.api(SURGE_BURN_MAX_SECONDS=10, SURGE_BURN_DEFAULT_SECONDS=5)
    post_job(api.http_port, "/jobs/burn", {"seconds": 10})
    post_job(api.http_port, "/jobs/burn", {"seconds": 1})


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/nope"), ("POST", "/nope"), ("GET", "/jobs/a/b"),
    ("GET", "/healthz"), ("GET", "/jobsx"), ("POST", "/jobs/read/x"),
])
def test_unknown_route(api, method, path):
    body = {} if method == "POST" else None
    assert_error(http(api.http_port, method, path, body), 404, "not_found")
    still_serves(api)


@pytest.mark.parametrize("method,path,allowed", [
    ("GET", "/jobs", "POST"),
    ("PUT", "/jobs", "POST"),
    ("DELETE", "/jobs/x", "GET"),
    ("POST", "/jobs/01JDX000000000000000000000", "GET"),
    ("GET", "/jobs/burn", None),
    ("PUT", "/jobs/read", "POST"),
])
def test_method_not_allowed(api, method, path, allowed):
    if allowed is None:
        # GET /jobs/burn may read as "the job named burn" (404) or as the
        # POST-only route (405); either way it is a documented error.
        r = http(api.http_port, method, path)
        assert r.status in (404, 405), r
        assert_error(r, r.status)
        return
    body = "{}" if method in ("POST", "PUT") else None
    r = http(api.http_port, method, path, body)
    assert_error(r, 405, "method_not_allowed")
    allow = [m.strip() for m in (r.header("allow") or "").split(",")]
    assert allowed in allow, f"Allow header {r.header('allow')!r} should list {allowed}"
    assert method not in allow, r


def test_post_without_length_is_411(api, redis):
    with Client(api.http_port) as c:
        c.send(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n")
        assert_error(c.read(), 411, "length_required")
    assert queued(redis) == []
    still_serves(api)


def test_huge_content_length_answered_before_the_body(surge, redis):
    api = surge.api(SURGE_MAX_BODY_BYTES=1024)
    with Client(api.http_port, timeout=10) as c:
        # Headers only: the answer must not wait for 100 MB that never come.
        c.send(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: 100000000\r\n\r\n")
        assert_error(c.read(), 413, "payload_too_large")
        assert c.is_closed_by_peer(5), "connection still open after 413"
    assert queued(redis) == []
    still_serves(api, redis)


def test_body_over_limit_is_413(surge, redis):
    api = surge.api(SURGE_MAX_BODY_BYTES=1024)
    pad = "x" * 1100
    body = json.dumps({"item_id": 1, "pad": pad})
    assert_error(http(api.http_port, "POST", "/jobs/read", body), 413, "payload_too_large")
    assert queued(redis) == []
    # A body right at the limit is not refused for its size.
    body = '{"item_id":1}' + " " * (1024 - 13)
    assert len(body) == 1024
    assert http(api.http_port, "POST", "/jobs/read", body).status == 202


def test_default_body_limit(api):
    body = '{"item_id":1}' + " " * 16384
    assert_error(http(api.http_port, "POST", "/jobs/read", body), 413, "payload_too_large")


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded",
                                   "application/xml"])
def test_not_json_is_415(api, redis, ctype):
    r = http(api.http_port, "POST", "/jobs/read", '{"item_id":1}', content_type=ctype)
    assert_error(r, 415, "unsupported_media_type")
    assert queued(redis) == []


def test_json_with_charset_is_accepted(api):
    r = http(api.http_port, "POST", "/jobs/read", '{"item_id":1}',
             content_type="application/json; charset=utf-8")
    assert r.status == 202, r


def test_headers_over_8k_are_431(api):
    r = http(api.http_port, "GET", "/jobs/x", headers={"X-Big": "a" * 9000})
    assert_error(r, 431, "headers_too_large")
    r = http(api.http_port, "GET", "/jobs/x", headers={f"X-H{i}": "b" * 90 for i in range(100)})
    assert_error(r, 431, "headers_too_large")
    still_serves(api)


def test_url_counts_in_header_limit(api):
    r = http(api.http_port, "GET", "/jobs/" + "a" * 9000)
    assert_error(r, 431, "headers_too_large")
    # Well under the limit: an ordinary 404.
    r = http(api.http_port, "GET", "/jobs/" + "a" * 1000, headers={"X-Mid": "m" * 3000})
    assert_error(r, 404, "not_found")


def test_malformed_request_is_400(api):
    with Client(api.http_port) as c:
        c.send(b"this is not http\r\n\r\n")
        assert_error(c.read(), 400, "bad_request")
    still_serves(api)


def test_stalled_headers_are_408(surge):
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=1)
    with Client(api.http_port, timeout=10) as c:
        t0 = time.monotonic()
        c.send(b"POST /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        r = c.read()
        waited = time.monotonic() - t0
        assert_error(r, 408, "request_timeout")
        assert 0.5 <= waited < 5, f"408 after {waited:.2f} s with a 1 s header timeout"
        assert c.is_closed_by_peer(5), "connection still open after 408"
    still_serves(api)


def test_slow_but_steady_headers_then_served(surge):
    # Headers that trickle in but are complete before the deadline are served.
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=2)
    with Client(api.http_port, timeout=10) as c:
        for part in (b"GET /jobs/x HTTP/1.1\r\n", b"Host: 127.0.0.1\r\n", b"\r\n"):
            c.send(part)
            time.sleep(0.3)
        assert_error(c.read(), 404, "not_found")


def test_header_deadline_counts_from_accept(surge):
    # A client that waits before its first byte gets no extra time: the
    # deadline runs from accept, not from the first byte.
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=3)
    with Client(api.http_port, timeout=15) as c:
        t0 = time.monotonic()
        time.sleep(2.5)
        c.send(b"GET /jobs/x HTTP/1.1\r\n")
        r = c.read()
        waited = time.monotonic() - t0
        assert_error(r, 408, "request_timeout")
        # 3 s after accept; restarting at the first byte would make it 5.5 s.
        assert waited < 4.5, f"408 came {waited:.2f} s after accept with a 3 s header timeout"
        assert c.is_closed_by_peer(5), "connection still open after 408"


def test_header_deadline_of_a_later_request_counts_from_its_first_byte(surge):
    # Between requests the idle timeout applies; the next request's deadline
    # starts with its first byte.
    api = surge.api(SURGE_HEADER_TIMEOUT_SECONDS=2, SURGE_IDLE_TIMEOUT_SECONDS=30)
    with Client(api.http_port, timeout=15) as c:
        assert_error(c.request("GET", "/jobs/x"), 404, "not_found")
        time.sleep(2.5)
        t0 = time.monotonic()
        c.send(b"GET /jobs/x HTTP/1.1\r\n")
        r = c.read()
        waited = time.monotonic() - t0
        assert_error(r, 408, "request_timeout")
        assert waited >= 1.5, f"408 {waited:.2f} s after the request began, deadline 2 s"


def test_redis_down_is_503_then_recovers(surge, redis):
    api = surge.api(SURGE_REDIS_TIMEOUT_MS=500)
    worker = surge.worker(SURGE_REDIS_TIMEOUT_MS=500)
    for proc in (api, worker):
        _wait(lambda: _ready(proc), 15, "/readyz 200 at start")
    before = post_job(api.http_port, "/jobs/read", {"item_id": 8})
    assert poll_job(api.http_port, before)["status"] == "succeeded"

    redis.stop()
    for path, body in (("/jobs/read", {"item_id": 1}),
                       ("/jobs", {"type": "burn", "params": {"seconds": 1}})):
        t0 = time.monotonic()
        r = http(api.http_port, "POST", path, body, timeout=10)
        assert_error(r, 503, "unavailable")
        assert time.monotonic() - t0 < 5, "503 took more than 5 s"
        retry_after = r.header("retry-after")
        assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, r
    assert_error(http(api.http_port, "GET", f"/jobs/{before}", timeout=10), 503, "unavailable")

    for proc, name in ((api, "surge-api"), (worker, "surge-worker")):
        def down():
            r = http(proc.admin_port, "GET", "/readyz", timeout=5)
            if r.status != 503:
                return None
            return r.json()
        body = _wait(down, 15, f"{name} /readyz to turn 503 with Redis stopped")
        assert body.get("status") != "ok", body
        assert body["checks"]["redis"]["status"] != "ok", body
        # The liveness probe must not follow a dependency down.
        assert http(proc.admin_port, "GET", "/healthz", timeout=5).status == 200

    redis.start()
    for proc, name in ((api, "surge-api"), (worker, "surge-worker")):
        body = _wait(lambda: _ready(proc), 15, f"{name} /readyz to turn 200 after Redis is back")
        assert body["checks"]["redis"]["status"] == "ok", body
    queued_id = post_job(api.http_port, "/jobs/read", {"item_id": 9})
    assert poll_job(api.http_port, queued_id)["status"] == "succeeded"
    # What was stored before the outage is still there.
    assert poll_job(api.http_port, before)["status"] == "succeeded"


def _ready(proc):
    r = http(proc.admin_port, "GET", "/readyz", timeout=5)
    return r.json() if r.status == 200 else None


def _wait(fn, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except (OSError, ConnectionClosed) as e:
            last = e
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last error {last!r})")


def test_error_then_keep_alive_continues(api):
    # After an error about the request's content (not its framing) the
    # connection either goes on or the answer says `Connection: close`.
    c = Client(api.http_port)
    try:
        for method, path, body, status, code in (
                ("POST", "/jobs", "{bad", 400, "bad_json"),
                ("GET", "/jobs/nope", None, 404, "not_found"),
                ("POST", "/jobs", {"type": "x", "params": {}}, 400, "unknown_type"),
                ("GET", "/jobs", None, 405, "method_not_allowed")):
            r = c.request(method, path, body)
            assert_error(r, status, code)
            if "close" in (r.header("connection") or "").lower():
                assert c.is_closed_by_peer(5), "Connection: close but the socket stays open"
                c.close()
                c = Client(api.http_port)
        assert c.request("POST", "/jobs/read", {"item_id": 2}).status == 202
    finally:
        c.close()


def _post(path, body):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# Malformed or hostile input and the one answer each must get. Framing errors
# (the request cannot be delimited) also close the connection.
GARBAGE = [
    (b"\x00\x01\x02\r\n\r\n", 400, "bad_request"),
    (b"GET /jobs/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, "bad_request"),
    (b"POST /jobs HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\n{}", 400, "bad_request"),
    (b"POST /jobs HTTP/1.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 99999999999999999999\r\n\r\n", 400, "bad_request"),
    (b"POST /jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
     b"Content-Type: application/json\r\n\r\nzz\r\n", 400, "bad_request"),
    (_post("/jobs/read", b'{"item_id":\x00}'), 400, "bad_json"),
    (_post("/jobs", b"[" * 200), 400, "bad_json"),
    (_post("/jobs", b"{" * 200), 400, "bad_json"),
    (_post("/jobs", b'{"type":"read","params":{"item_id":99999999999999999999999}}'), 400, "bad_params"),
    (_post("/jobs", b'{"type":"read","params":{"item_id":1e400}}'), 400, "bad_params"),
    (_post("/jobs", b'{"type":"\\ud800","params":{}}'), 400, "unknown_type"),
    # Nested deeper than the token array holds, under an unknown field.
    (_post("/jobs", b'{"type":"read","params":{"item_id":1},"x":' + b"[" * 100 + b"]" * 100 + b"}"),
     400, "bad_json"),
    (_post("/jobs", '{"type":"réad","params":{}}'.encode()), 400, "unknown_type"),
    (_post("/jobs", b'{"type":"read\xff","params":{}}'), 400, "bad_json"),
    (_post("/jobs/burn", b'{"seconds":-9223372036854775808}'), 400, "bad_params"),
    (_post("/jobs/burn", b'{"seconds":9223372036854775808}'), 400, "bad_params"),
]


@pytest.mark.parametrize("payload,status,code", GARBAGE)
def test_garbage_gets_its_answer(api, redis, payload, status, code):
    with Client(api.http_port, timeout=10) as c:
        c.send(payload)
        r = read_response(c.f)
        assert_error(r, status, code)
        if code == "bad_request":
            assert "close" in (r.header("connection") or "").lower(), r
            assert c.is_closed_by_peer(5), "connection still open after a framing error"
    assert queued(redis) == []
    still_serves(api, redis)
