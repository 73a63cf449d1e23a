"""HTTP/1.1 connection handling of surge-api: keep-alive, pipelining,
requests split across many packets, Connection: close, HTTP/1.0, idle timeout,
clients that half-close or pipeline while a handler waits for Redis."""

import contextlib
import socket
import time

import pytest

from helpers import (Client, assert_error, build_request, get_job, post_job, queued,
                     read_response, wait_for)


def test_keep_alive_many_requests_one_socket(api):
    with Client(api.http_port) as c:
        ids = []
        for n in range(1, 6):
            r = c.request("POST", "/jobs/read", {"item_id": n})
            assert r.status == 202, r
            assert "close" not in (r.header("connection") or "").lower(), r
            ids.append(r.json()["id"])
        for job_id in ids:
            r = c.request("GET", f"/jobs/{job_id}")
            assert r.status == 200 and r.json()["id"] == job_id, r
        assert_error(c.request("GET", "/jobs/unknown"), 404, "not_found")
        r = c.request("POST", "/jobs/burn", {"seconds": 1})
        assert r.status == 202 and r.json()["type"] == "burn", r
        local = c.sock.getsockname()
    # The same socket carried everything: the server never closed it.
    assert local[0] == "127.0.0.1"


def test_pipelined_requests_answered_in_order(api):
    reqs = [
        ("POST", "/jobs/read", {"item_id": 11}),
        ("POST", "/jobs/burn", {"seconds": 1}),
        ("GET", "/jobs/nope", None),
        ("POST", "/jobs", {"type": "read", "params": {"item_id": 12}}),
        ("GET", "/jobs", None),
    ]
    with Client(api.http_port) as c:
        c.send(b"".join(build_request(m, p, b) for m, p, b in reqs))
        answers = [c.read(m) for m, _, _ in reqs]
        assert answers[0].status == 202 and answers[0].json()["type"] == "read", answers[0]
        assert answers[1].status == 202 and answers[1].json()["type"] == "burn", answers[1]
        assert_error(answers[2], 404, "not_found")
        assert answers[3].status == 202 and answers[3].json()["type"] == "read", answers[3]
        assert_error(answers[4], 405, "method_not_allowed")

        # Now read the jobs back, again pipelined, and match the ids.
        ids = [answers[i].json()["id"] for i in (0, 1, 3)]
        c.send(b"".join(build_request("GET", f"/jobs/{i}") for i in ids))
        for job_id, params in zip(ids, ({"item_id": 11}, {"seconds": 1}, {"item_id": 12})):
            r = c.read()
            assert r.status == 200, r
            j = r.json()
            assert j["id"] == job_id and j["params"] == params, j


def test_requests_split_in_small_pieces(api):
    data = (build_request("POST", "/jobs/read", {"item_id": 21})
            + build_request("GET", "/jobs/none"))
    with Client(api.http_port) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 5):
            c.send(data[i:i + 5])
            time.sleep(0.002)
        r = c.read()
        assert r.status == 202 and r.json()["type"] == "read", r
        assert_error(c.read(), 404, "not_found")


def test_connection_close_is_honoured(api):
    with Client(api.http_port) as c:
        r = c.request("GET", "/jobs/x", headers={"Connection": "close"})
        assert_error(r, 404, "not_found")
        assert c.is_closed_by_peer(5), "server kept the connection after Connection: close"


def test_http_1_0_closes_after_answer(api):
    with Client(api.http_port) as c:
        c.send(b"GET /jobs/x HTTP/1.0\r\n\r\n")
        r = read_response(c.f)
        assert_error(r, 404, "not_found")
        assert c.is_closed_by_peer(5), "server kept an HTTP/1.0 connection open"


def test_idle_keep_alive_connection_is_closed(surge):
    api = surge.api(SURGE_IDLE_TIMEOUT_SECONDS=1)
    with Client(api.http_port) as c:
        assert c.request("POST", "/jobs/read", {"item_id": 1}).status == 202
        t0 = time.monotonic()
        c.sock.settimeout(8)
        try:
            rest = c.f.read()  # a polite server may say 408 before it closes
        except ConnectionResetError:
            rest = b""
        waited = time.monotonic() - t0
        assert waited < 6, f"idle connection still open after {waited:.1f} s"
        assert rest == b"" or rest.startswith(b"HTTP/1.1 408"), rest[:200]


def test_many_connections_at_once(api):
    clients = [Client(api.http_port) for _ in range(50)]
    try:
        for c in clients:
            c.send(build_request("GET", "/jobs/nope"))
        for c in clients:
            assert_error(c.read(), 404, "not_found")
    finally:
        for c in clients:
            c.close()


@contextlib.contextmanager
def redis_writes_paused(redis):
    """Redis holds every write command (the api's enqueue script among them)
    until the block ends: a POST's handler waits for as long as the test
    wants."""
    redis.cli("CLIENT", "PAUSE", "120000", "WRITE")
    try:
        yield
    finally:
        redis.cli("CLIENT", "UNPAUSE")


def a_command_is_held(redis):
    """True once some client of Redis waits in the pause (flag b)."""
    for line in redis.lines("CLIENT", "LIST"):
        fields = dict(f.partition("=")[::2] for f in line.split())
        if "b" in fields.get("flags", ""):
            return True
    return False


def nothing_to_read(sock):
    """True when no byte of an answer is waiting on sock."""
    sock.settimeout(0.3)
    try:
        sock.recv(1, socket.MSG_PEEK)  # an answer, or the end of the connection
        return False
    except (socket.timeout, TimeoutError, BlockingIOError):
        return True
    finally:
        sock.settimeout(10)


def test_half_closed_client_gets_its_answer_then_the_connection_closes(api, redis):
    """A client that sends its request and shuts down its sending side
    (shutdown(SHUT_WR)) while the api waits for Redis still gets its answer,
    marked Connection: close, and then the end of the connection."""
    with Client(api.http_port) as c:
        with redis_writes_paused(redis):
            c.send(build_request("POST", "/jobs/read", {"item_id": 31}))
            wait_for(lambda: a_command_is_held(redis), 10, message="the enqueue held by Redis")
            c.sock.shutdown(socket.SHUT_WR)
        r = c.read("POST")
        assert r.status == 202 and r.json()["type"] == "read", r
        assert (r.header("connection") or "").lower() == "close", r
        assert c.is_closed_by_peer(10), "connection left open after the last answer"
    assert queued(redis) == [r.json()["id"]]


def test_half_closed_client_gets_every_pipelined_answer(api, redis):
    reqs = [
        ("POST", "/jobs/read", {"item_id": 32}),
        ("GET", "/jobs/nope", None),
        ("POST", "/jobs/burn", {"seconds": 1}),
    ]
    with Client(api.http_port) as c:
        with redis_writes_paused(redis):
            c.send(b"".join(build_request(m, p, b) for m, p, b in reqs))
            wait_for(lambda: a_command_is_held(redis), 10, message="the enqueue held by Redis")
            c.sock.shutdown(socket.SHUT_WR)
        answers = [c.read(m) for m, _, _ in reqs]
        assert answers[0].status == 202 and answers[0].json()["type"] == "read", answers[0]
        assert_error(answers[1], 404, "not_found")
        assert answers[2].status == 202 and answers[2].json()["type"] == "burn", answers[2]
        assert (answers[2].header("connection") or "").lower() == "close", answers[2]
        assert c.is_closed_by_peer(10), "connection left open after the last answer"
    assert sorted(queued(redis)) == sorted(a.json()["id"] for a in (answers[0], answers[2]))


def test_requests_pipelined_while_a_handler_waits_are_answered_in_order(api, redis):
    """Requests that arrive while a POST waits for Redis wait their turn, more
    of them than the api buffers (it stops reading past 16 KiB and resumes):
    all are answered, in order, on the same connection."""
    pad = {"X-Pad": "p" * 200}
    later = [("POST", "/jobs/read", {"item_id": n + 1}) if n % 3 == 0 else ("GET", "/jobs/nope", None)
             for n in range(120)]  # about 30 KiB
    with Client(api.http_port) as c:
        with redis_writes_paused(redis):
            c.send(build_request("POST", "/jobs/burn", {"seconds": 1}))
            wait_for(lambda: a_command_is_held(redis), 10, message="the enqueue held by Redis")
            c.send(b"".join(build_request(m, p, b, headers=pad) for m, p, b in later))
            # The 404s are answered without Redis: none may overtake the POST.
            assert nothing_to_read(c.sock), "an answer overtook the POST waiting for Redis"
        first = c.read("POST")
        assert first.status == 202 and first.json()["type"] == "burn", first
        sent = {first.json()["id"]: {"seconds": 1}}
        for n, (m, _, body) in enumerate(later):
            r = c.read(m)
            if m == "GET":
                assert_error(r, 404, "not_found")
            else:
                assert r.status == 202 and r.json()["type"] == "read", (n, r)
                sent[r.json()["id"]] = body
        # Still the same keep-alive connection.
        assert_error(c.request("GET", "/jobs/nope"), 404, "not_found")
    assert sorted(queued(redis)) == sorted(sent)
    # In order: each answer names the job made of the request it answers.
    for job_id, params in sent.items():
        assert get_job(api.http_port, job_id)["params"] == params, job_id


def _head_then_get(port, path):
    """HEAD then GET of path pipelined on one keep-alive connection; returns
    both answers. The HEAD answer is read as HEAD (headers only), so a body
    sent after it shows up where the GET's status line should be."""
    with Client(port) as c:
        c.send(build_request("HEAD", path) + build_request("GET", path))
        head = c.read("HEAD")
        get = c.read("GET")
        # Nothing else may follow: a third answer or stray bytes would be a bug.
        c.sock.settimeout(0.3)
        try:
            extra = c.sock.recv(1)
        except (socket.timeout, TimeoutError):
            extra = b""
        assert extra == b"", f"bytes after the GET answer: {extra!r}"
    return head, get


def test_head_has_the_headers_of_get_and_no_body(api):
    job_id = post_job(api.http_port, "/jobs/read", {"item_id": 3})
    for path, status in ((f"/jobs/{job_id}", 200), ("/jobs/01M8A4E1EA2HS751PXC6HB2TWS", 404),
                         ("/jobs/nope", 404), ("/nope", 404)):
        head, get = _head_then_get(api.http_port, path)
        assert head.status == get.status == status, (path, head, get)
        assert head.header("content-length") == str(len(get.body)), (path, head, get)
        assert head.header("content-type") == get.header("content-type"), (path, head, get)
    # HEAD of a POST-only route: 405 with Allow, still no body.
    head, get = _head_then_get(api.http_port, "/jobs")
    assert head.status == get.status == 405, (head, get)
    assert head.header("allow") == get.header("allow") == "POST", (head, get)
    assert head.header("content-length") == str(len(get.body)), (head, get)


def test_head_on_the_admin_port(api, worker):
    for proc in (api, worker):
        for path in ("/healthz", "/readyz", "/metrics", "/nope"):
            head, get = _head_then_get(proc.admin_port, path)
            assert head.status == get.status or path == "/readyz", (proc.name, path, head, get)
            assert head.header("content-type") == get.header("content-type"), (path, head, get)
            n = int(head.header("content-length"))
            if path in ("/healthz", "/nope"):
                assert n == len(get.body), (proc.name, path, head, get)
            else:
                # The page changes between two requests (counters, latencies,
                # the HEAD's own series): the length is that of a real page.
                assert n > 20, (proc.name, path, head, get)


# Requests that a proxy in front and surge could delimit differently, each
# carrying a second request that a lenient reading would answer as well.
SMUGGLED = b"GET /jobs/nope HTTP/1.1\r\nHost: x\r\n\r\n"
SMUGGLING = [
    ("Content-Length and Transfer-Encoding",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("Transfer-Encoding and Content-Length",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\nContent-Length: 13\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("Content-Length twice",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length: 13\r\nContent-Length: 0\r\n\r\n{\"item_id\":1}" + SMUGGLED),
    ("folded Transfer-Encoding",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("space before the colon",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Content-Length : 0\r\n\r\n" + SMUGGLED),
    ("Transfer-Encoding not ending in chunked",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED),
    ("chunk size with a space",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nd \r\n{\"item_id\":1}\r\n0\r\n\r\n" + SMUGGLED),
    ("LF alone ending a header",
     b"POST /jobs/read HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\n"
     b"Content-Length: 13\r\n\r\n{\"item_id\":1}" + SMUGGLED),
]


@pytest.mark.parametrize("what,payload", SMUGGLING, ids=[w for w, _ in SMUGGLING])
def test_request_smuggling_is_refused(api, redis, what, payload):
    """One 400 and the connection closed: neither the request nor what it
    carries is served, and no job is queued."""
    with Client(api.http_port, timeout=10) as c:
        c.send(payload)
        assert_error(c.read(), 400, "bad_request")
        assert c.is_closed_by_peer(5), f"{what}: more was read after the refusal"
    assert queued(redis) == [], what
