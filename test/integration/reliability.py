"""Tools for the fault tests (test_reliability.py, test_chaos.py): a small
Redis client that speaks RESP over one socket (thousands of look-ups without
a redis-cli process each), worker names and keys, Prometheus text parsing,
a job submitter that keeps posting from threads, and waiting helpers.

Everything talks to 127.0.0.1 only."""

import json
import random
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone

import pytest

from helpers import LOOPBACK, Client, ConnectionClosed, http

# --------------------------------------------------------------------------
# Redis over RESP


class RedisError(Exception):
    pass


class Resp:
    """One connection to Redis; call() sends a command, pipeline() many."""

    def __init__(self, port, timeout=10):
        self.port = port
        self.timeout = timeout
        self.sock = None
        self.f = None

    def _connect(self):
        self.sock = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
        self.f = self.sock.makefile("rb")

    def close(self):
        if self.sock:
            try:
                self.f.close()
                self.sock.close()
            finally:
                self.sock = self.f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _encode(args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            if not isinstance(a, bytes):
                a = str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        return b"".join(out)

    def _read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionClosed("redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            return [self._read() for _ in range(n)]
        raise RedisError(f"bad RESP line {line!r}")

    def pipeline(self, commands):
        """Sends every command, then reads every answer (in order)."""
        if self.sock is None:
            self._connect()
        try:
            self.sock.sendall(b"".join(self._encode(c) for c in commands))
            return [self._read() for _ in commands]
        except (OSError, ConnectionClosed):
            self.close()
            raise

    def call(self, *args):
        r = self.pipeline([args])[0]
        if isinstance(r, RedisError):
            raise r
        return r

    def hgetall(self, key):
        flat = self.call("HGETALL", key) or []
        return dict(zip(flat[0::2], flat[1::2]))

    def hashes(self, keys, chunk=500):
        """HGETALL of many keys, pipelined."""
        out = []
        for i in range(0, len(keys), chunk):
            for flat in self.pipeline([("HGETALL", k) for k in keys[i:i + chunk]]):
                out.append(dict(zip(flat[0::2], flat[1::2])) if isinstance(flat, list) else {})
        return out

    def scan_keys(self, pattern):
        keys, cursor = [], "0"
        while True:
            cursor, batch = self.call("SCAN", cursor, "MATCH", pattern, "COUNT", 1000)
            keys += batch
            if cursor == "0":
                return sorted(set(keys))


# --------------------------------------------------------------------------
# names, keys, metrics, times


def worker_name(proc):
    """The worker's identity {hostname}-{pid} (docs/architecture.md)."""
    return f"{socket.gethostname()[:63]}-{proc.pid}"


def processing_key(name):
    return f"surge:processing:{name}"


def heartbeat_key(name):
    return f"surge:worker:{name}"


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$')


def metrics(port):
    """/metrics of a process as {(name, frozenset(labels)): value}."""
    r = http(port, "GET", "/metrics", timeout=5)
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"bad exposition line {line!r}"
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(port, name, **labels):
    """One sample's value, 0 when absent."""
    return metrics(port).get((name, frozenset(labels.items())), 0.0)


def iso_ms(text):
    """Milliseconds since the epoch of an ISO 8601 UTC time with milliseconds."""
    dt = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


def now_ms():
    return int(time.time() * 1000)


def poll_until(fn, timeout, interval=0.05, what="condition"):
    """Calls fn until it returns something truthy; fails after timeout s."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except (OSError, ConnectionClosed, RedisError, AssertionError) as e:
            last = e
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def readyz(proc):
    """(status code, JSON body) of a process's /readyz."""
    r = http(proc.admin_port, "GET", "/readyz", timeout=5)
    return r.status, r.json()


def kill9(proc):
    """SIGKILL, as when a pod is killed; the fixture then expects no exit code."""
    proc.signal(signal.SIGKILL)
    proc.wait_exit(10)


def sigterm_and_time(proc, timeout):
    """SIGTERM; returns (exit code, seconds it took to exit)."""
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    code = proc.wait_exit(timeout)
    return code, time.monotonic() - t0


# --------------------------------------------------------------------------
# jobs


def final_states(resp, ids):
    """{id: job hash} for the given ids, straight from Redis."""
    return dict(zip(ids, resp.hashes([f"surge:job:{i}" for i in ids])))


def wait_all_finished(resp, ids, timeout, statuses=("succeeded",)):
    """Waits until every job's hash has one of statuses; returns the hashes.
    On time-out fails with a count by status and examples of the rest."""
    deadline = time.monotonic() + timeout
    while True:
        states = final_states(resp, ids)
        pending = {i: h for i, h in states.items() if h.get("status") not in statuses}
        if not pending:
            return states
        if time.monotonic() >= deadline:
            by_status = {}
            for h in pending.values():
                by_status[h.get("status", "<missing hash>")] = \
                    by_status.get(h.get("status", "<missing hash>"), 0) + 1
            sample = list(pending.items())[:5]
            pytest.fail(f"{len(pending)} of {len(ids)} jobs not {statuses} after {timeout} s: "
                        f"{by_status}; e.g. {sample}; queue={resp.call('LLEN', 'surge:queue')} "
                        f"retry={resp.call('ZCARD', 'surge:retry')} "
                        f"dead={resp.call('LLEN', 'surge:dead')}")
        time.sleep(0.25)


def assert_nothing_left(resp, timeout=15):
    """No id waits anywhere once every job has finished. An id whose BLMOVE
    answer was lost with a connection (Redis going away) sits in its worker's
    list until the worker's orphan check has seen it twice (5 s apart) and put
    it back, so the lists get that long to empty."""
    deadline = time.monotonic() + timeout
    while True:
        left = {
            "surge:queue": resp.call("LLEN", "surge:queue"),
            "surge:retry": resp.call("ZCARD", "surge:retry"),
            "surge:dead": resp.call("LLEN", "surge:dead"),
        }
        for k in resp.scan_keys("surge:processing:*"):
            left[k] = resp.call("LLEN", k)
        if all(v == 0 for v in left.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert all(v == 0 for v in left.values()), f"ids still waiting: {left}"


class Submitter:
    """Posts jobs from a few threads on keep-alive connections, at most `rate`
    per second in all, until `total` are accepted or stop() is called.
    An answer other than 202 (503 while Redis is away, a closed connection)
    is retried after a short pause: only 202 counts as accepted, and every
    accepted id is kept with its type. Other statuses are recorded."""

    def __init__(self, port, total, rate=None, threads=4, burn_every=0, burn_seconds=1,
                 item_max=100000, seed=1):
        self.port = port
        self.total = total
        self.rate = rate
        self.nthreads = threads
        self.burn_every = burn_every
        self.burn_seconds = burn_seconds
        self.item_max = item_max
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted = []  # (id, type)
        self.refused = {}   # status -> count
        self.errors = 0     # connection errors
        self.slowest_refusal = 0.0
        self.n_started = 0
        self.stopping = threading.Event()
        self.threads = []
        self.t0 = None

    def _next(self):
        with self.lock:
            if self.n_started >= self.total or self.stopping.is_set():
                return None
            n = self.n_started
            self.n_started += 1
            item = self.rng.randint(1, self.item_max)
        if self.rate:
            due = self.t0 + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if self.burn_every and n % self.burn_every == self.burn_every - 1:
            return "burn", "/jobs/burn", {"seconds": self.burn_seconds}
        return "read", "/jobs/read", {"item_id": item}

    def _run(self):
        client = None
        job = self._next()
        while job is not None:
            kind, path, body = job
            t0 = time.monotonic()
            try:
                if client is None:
                    client = Client(self.port, timeout=10)
                r = client.request("POST", path, body)
                if "close" in (r.header("connection") or "").lower():
                    client.close()
                    client = None
            except (OSError, ConnectionClosed):
                if client:
                    client.close()
                client = None
                with self.lock:
                    self.errors += 1
                if self.stopping.is_set():
                    return
                time.sleep(0.1)
                continue
            if r.status == 202:
                with self.lock:
                    self.accepted.append((json.loads(r.body)["id"], kind))
                job = self._next()
                continue
            took = time.monotonic() - t0
            with self.lock:
                self.refused[r.status] = self.refused.get(r.status, 0) + 1
                self.slowest_refusal = max(self.slowest_refusal, took)
            if self.stopping.is_set():
                break
            time.sleep(0.1)
        if client:
            client.close()

    def start(self):
        self.t0 = time.monotonic()
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self):
        self.stopping.set()
        return self.join()

    def join(self, timeout=120):
        for t in self.threads:
            t.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "submitter threads still running"
        return self

    def count(self):
        with self.lock:
            return len(self.accepted)

    def ids(self, kind=None):
        with self.lock:
            return [i for i, k in self.accepted if kind is None or k == kind]


# --------------------------------------------------------------------------
# PostgreSQL


def postgres_is_up(pg):
    r = subprocess.run([pg.psql_path, "-X", "-At", "-h", LOOPBACK, "-p", str(pg.port), "-U",
                        "surge", "-d", "surge", "-c", "SELECT 1"],
                       capture_output=True, text=True, timeout=20)
    return r.returncode == 0 and r.stdout.strip() == "1"


class PostgresDown:
    """with PostgresDown(pg): PostgreSQL is stopped inside the block; on the way
    out (failure too) it is started again and must answer before the next
    test, since the server is shared by the whole session."""

    def __init__(self, pg):
        self.pg = pg

    def __enter__(self):
        self.pg.stop()
        assert not postgres_is_up(self.pg), "PostgreSQL still answers after pg_ctl stop"
        return self

    def __exit__(self, *exc):
        self.pg.start()
        deadline = time.monotonic() + 60
        while not postgres_is_up(self.pg):
            if time.monotonic() > deadline:
                pytest.fail("PostgreSQL did not come back within 60 s")
            time.sleep(0.2)
        return False
