"""Bounded resources of surge-api: a client that pipelines requests and never
reads the answers gets no more memory than a few answers' worth (the api's
RSS is read from /proc while such clients run), a connection limit, and
descriptor exhaustion that is counted and logged."""

import selectors
import socket
import threading
import time

import pytest

from helpers import (Client, ConnectionClosed, assert_error, bin_dir, http, read_response,
                     wait_for)
from reliability import metrics

RSS_CEILING_MIB = 32
# One pipelined request whose answer (404) is several times its size.
REQUEST = b"GET /jobs/x HTTP/1.1\r\n\r\n"


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{pid}/status")


def sanitized():
    """True for the ASan build: its allocator keeps freed memory in quarantine
    and maps shadow memory, so its RSS is not the release build's."""
    return b"__asan_init" in (bin_dir() / "surge-api").read_bytes()


def rss_ceiling(baseline):
    # The release build must stay under the promise; the ASan build (whose
    # allocator never gives memory back at once) must not grow by more than
    # twice that, where an unbounded api grows by gigabytes.
    return baseline + 2 * RSS_CEILING_MIB if sanitized() else RSS_CEILING_MIB


def api_for_rss(surge):
    """surge-api whose RSS follows its live memory: ASan's quarantine (256 MB
    of freed memory kept back to catch use after free) is made small, or a
    burst of short-lived answers would fill it whatever the api holds."""
    return surge.api(ASAN_OPTIONS="quarantine_size_mb=4:thread_local_quarantine_size_kb=64")


def non_reader(port):
    """A connected non-blocking socket that will not read: a small receive
    buffer makes the api's answers back up at once."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


def send_some(sock, data):
    """Sends what the kernel takes now; returns the number of bytes sent."""
    try:
        return sock.send(data)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError as e:
        pytest.fail(f"the api closed a connection that had done nothing wrong: {e!r}")


def send_until_stalled(sock, stall_seconds, timeout=60, each=None):
    """Sends bursts of requests to a client that never reads until the api
    stops reading them: nothing goes out for stall_seconds. Calls each(sent)
    after every send. Returns the bytes sent, or None when the api still
    read after timeout seconds."""
    pending, sent, stalled_since = b"", 0, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = pending or REQUEST * 200
        n = send_some(sock, pending)
        pending = pending[n:]
        sent += n
        if each:
            each(sent)
        if n:
            stalled_since = None
        elif stalled_since is None:
            stalled_since = time.monotonic()
        elif time.monotonic() - stalled_since > stall_seconds:
            return sent
        if not n:
            time.sleep(0.02)
    return None


def read_all_answers(sock, n, timeout=60):
    """Reads n answers from sock (now blocking) and returns their statuses."""
    sock.setblocking(True)
    sock.settimeout(timeout)
    f = sock.makefile("rb")
    try:
        return [read_response(f).status for _ in range(n)]
    finally:
        f.close()


def test_a_client_that_does_not_read_cannot_grow_the_api(surge):
    api = api_for_rss(surge)
    before = rss_mib(api.pid)
    ceiling = rss_ceiling(before)
    s = non_reader(api.http_port)
    peak = before
    try:
        # Send while the api reads. It must stop reading once its answers
        # back up: then sending stalls for good.
        def watch(sent):
            nonlocal peak
            peak = max(peak, rss_mib(api.pid))
            assert peak < ceiling, (f"api RSS {peak:.1f} MiB (was {before:.1f}) after "
                                    f"{sent // len(REQUEST)} unread requests")
        sent = send_until_stalled(s, 3, each=watch)
        if sent is None:
            pytest.fail("the api still reads after 60 s: nothing holds it back")
        for _ in range(20):
            peak = max(peak, rss_mib(api.pid))
            time.sleep(0.05)
        assert peak < ceiling, f"api RSS {peak:.1f} MiB (was {before:.1f})"
        requests = sent // len(REQUEST)
        # More answers than every socket buffer on the way holds: the api
        # itself had to hold some back.
        assert requests * 150 > 1024 * 1024, f"only {requests} requests went out"
        print(f"\n{requests} unread requests: api RSS {before:.1f} -> peak {peak:.1f} MiB")

        # Reading again: every request sent is answered, in order, once. The
        # last request may be cut: its end is sent while the answers are read
        # (the api reads it only once its answers have drained).
        s.settimeout(60)
        rest = REQUEST[sent % len(REQUEST):] if sent % len(REQUEST) else b""
        finisher = threading.Thread(target=s.sendall, args=(rest,), daemon=True)
        finisher.start()
        if rest:
            requests += 1
        statuses = read_all_answers(s, requests)
        finisher.join(10)
        assert statuses == [404] * requests
        s.settimeout(0.5)
        with pytest.raises((socket.timeout, TimeoutError)):
            extra = s.recv(1)
            pytest.fail(f"an answer more than the requests sent: {extra!r}")
    finally:
        s.close()
    assert http(api.http_port, "GET", "/jobs/x").status == 404


def answered(api):
    r = http(api.admin_port, "GET", "/metrics", timeout=10)
    total = 0.0
    for line in r.body.decode().splitlines():
        if line.startswith("surge_http_requests_total{") and 'route="/jobs/{id}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_thousand_clients_that_do_not_read(surge):
    api = api_for_rss(surge)
    before = rss_mib(api.pid)
    ceiling = rss_ceiling(before)
    clients = []
    sel = selectors.DefaultSelector()
    per_client = REQUEST * 400
    pending = {}
    peak = before
    try:
        for _ in range(1000):
            s = non_reader(api.http_port)
            clients.append(s)
            pending[s] = per_client
            sel.register(s, selectors.EVENT_WRITE)
        # Send each client's requests as the api takes them.
        deadline = time.monotonic() + 120
        last_progress = time.monotonic()
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                n = send_some(s, pending[s])
                if n:
                    last_progress = time.monotonic()
                pending[s] = pending[s][n:]
                if not pending[s]:
                    del pending[s]
                    sel.unregister(s)
            peak = max(peak, rss_mib(api.pid))
            assert peak < ceiling, f"api RSS {peak:.1f} MiB (was {before:.1f}) with 1000 clients"
            if time.monotonic() - last_progress > 3:
                break  # the api reads no more: the clients' answers back up
        # Wait until the api answers nothing more, watching its RSS.
        last, same_since = answered(api), time.monotonic()
        while time.monotonic() - same_since < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
            peak = max(peak, rss_mib(api.pid))
            assert peak < ceiling, f"api RSS {peak:.1f} MiB (was {before:.1f}) with 1000 clients"
            now = answered(api)
            if now != last:
                last, same_since = now, time.monotonic()
        print(f"\n1000 clients, {last:.0f} answers: api RSS {before:.1f} -> peak {peak:.1f} MiB")
        assert last > 100_000, f"only {last:.0f} requests answered: the test did not load the api"
    finally:
        sel.close()
        for s in clients:
            s.close()
    assert http(api.http_port, "GET", "/jobs/x").status == 404


def test_shutdown_does_not_wait_for_a_client_that_does_not_read(surge):
    api = surge.api(SURGE_SHUTDOWN_GRACE_SECONDS=10)
    s = non_reader(api.http_port)
    try:
        # Fill every buffer on the way until the api stops reading.
        assert send_until_stalled(s, 2) is not None, "the api still reads after 60 s"
        t0 = time.monotonic()
        code = api.stop(timeout=30)
        took = time.monotonic() - t0
        assert code == 0, f"surge-api exited with {code} after SIGTERM:\n{api.stderr_path.read_text()[-2000:]}"
        assert took < 8, f"the drain waited {took:.1f} s for a client that does not read"
    finally:
        s.close()


def sample(port, name, **labels):
    """The value of one exported sample; fails when the api does not export it."""
    key = (name, frozenset(labels.items()))
    got = metrics(port)
    assert key in got, f"{name}{labels} is not exported: {sorted(k for k in got if k[0] == name)}"
    return got[key]


def log_lines(proc, event):
    return [line for line in proc.stderr().splitlines() if f" {event}: " in line]


def test_the_worker_admin_port_counts_its_connections(surge):
    """The worker's admin server reports its connections like the api's,
    under server="admin": three held open, then closed."""
    worker = surge.worker()
    wait_for(lambda: http(worker.admin_port, "GET", "/healthz").status == 200, 15,
             message="the worker's admin port")
    # Each scrape opens and closes a connection of its own: it counts itself
    # (once the server has seen the earlier ones close).
    wait_for(lambda: sample(worker.admin_port, "surge_http_connections", server="admin") == 1,
             15, message="only the scrape's own connection open")
    held = [Client(worker.admin_port, timeout=10) for _ in range(3)]
    try:
        for c in held:
            assert c.request("GET", "/healthz").status == 200
        assert sample(worker.admin_port, "surge_http_connections", server="admin") == 4
    finally:
        for c in held:
            c.close()
    wait_for(lambda: sample(worker.admin_port, "surge_http_connections", server="admin") == 1,
             15, message="the closed connections to be counted out")
    assert sample(worker.admin_port, "surge_http_connections_refused_total", server="admin") == 0
    assert ("surge_http_connections", frozenset({("server", "api")})) not in \
        metrics(worker.admin_port), "the worker has no api server"


def test_connections_past_the_limit_are_closed_at_once(surge):
    api = surge.api(SURGE_MAX_CONNECTIONS=4)
    held = [Client(api.http_port, timeout=10) for _ in range(4)]
    extra = []
    try:
        for c in held:
            assert_error(c.request("GET", "/jobs/x"), 404, "not_found")
        for _ in range(3):
            # The kernel completes the handshake; the api closes it at once.
            c = Client(api.http_port, timeout=10)
            extra.append(c)
            assert c.is_closed_by_peer(5), "a connection past SURGE_MAX_CONNECTIONS was served"
        assert sample(api.admin_port, "surge_http_connections", server="api") == 4
        assert sample(api.admin_port, "surge_http_connections_refused_total", server="api") == 3
        # Logged once for the interval, not once per connection.
        lines = log_lines(api, "connections_refused")
        assert len(lines) == 1, lines
        assert "4 connections open" in lines[0], lines

        # Room again: accepting resumes.
        held.pop().close()
        wait_for(lambda: sample(api.admin_port, "surge_http_connections", server="api") == 3,
                 15, message="the closed connection to be counted out")
        with Client(api.http_port, timeout=10) as c:
            assert_error(c.request("GET", "/jobs/x"), 404, "not_found")
        # The others of the interval are reported when it ends.
        wait_for(lambda: any("2 more connections refused" in line
                             for line in log_lines(api, "connections_refused")),
                 30, message="the refused connections of the interval to be logged")
    finally:
        for c in held + extra:
            c.close()


def test_running_out_of_descriptors_is_counted_and_logged(surge):
    # 48 descriptors in all, SURGE_MAX_CONNECTIONS far above: accept itself fails.
    api = surge.api(nofile=48, SURGE_MAX_CONNECTIONS=1000)
    served, lost = [], 0
    try:
        for _ in range(80):
            c = Client(api.http_port, timeout=10)
            c.send(b"GET /jobs/x HTTP/1.1\r\n\r\n")
            try:
                r = c.read()
            except (ConnectionClosed, OSError):
                r = None
            if r is None:
                lost += 1
                c.close()
                if lost == 5:
                    break
            else:
                assert_error(r, 404, "not_found")
                served.append(c)
        assert lost == 5, f"{len(served)} connections served and none lost: the limit did not bite"
        lines = log_lines(api, "accept_failed")
        assert len(lines) == 1 and "too many open files" in lines[0], lines
        assert log_lines(api, "fd_limit"), "no warning at start that descriptors are short"
    finally:
        for c in served:
            c.close()
    # With descriptors free again, the admin port answers and counts each loss.
    wait_for(lambda: sample(api.admin_port, "surge_http_connections", server="api") == 0,
             15, message="the closed connections to be counted out")
    assert sample(api.admin_port, "surge_http_accept_errors_total", server="api",
                  error="emfile") == lost
    assert http(api.http_port, "GET", "/jobs/x").status == 404
