"""Tools for the fault tests (test_reliability.py, test_chaos.py,
test_ownership.py): a small Redis client that speaks RESP over one socket
(thousands of look-ups without a redis-cli process each), worker names and
keys, Prometheus text parsing, a job submitter that keeps posting from
threads, a Redis proxy that cuts chosen connections, a table lock, Redis run
as production runs it, the invariants of the Redis keys, and waiting helpers.

Everything talks to 127.0.0.1 only."""

import hashlib
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from helpers import (JOB_TYPES, LOOPBACK, QUEUES, REPO_ROOT, Client, ConnectionClosed,
                     RedisServer, free_port, http, post_job)

# --------------------------------------------------------------------------
# Redis over RESP


class RedisError(Exception):
    pass


class Resp:
    """One connection to Redis; call() sends a command, pipeline() many."""

    def __init__(self, port, timeout=10, user=None, password=None):
        self.port = port
        self.timeout = timeout
        self.user = user
        self.password = password
        self.sock = None
        self.f = None

    @classmethod
    def of(cls, server):
        """A client of a helpers.RedisServer, logged in as its tests' user."""
        return cls(server.port, user=server.user, password=server.password)

    def _connect(self):
        self.sock = socket.create_connection((LOOPBACK, self.port), timeout=self.timeout)
        self.f = self.sock.makefile("rb")
        if self.password:
            self.sock.sendall(self._encode(["AUTH", self.user, self.password]))
            answer = self._read()
            if isinstance(answer, RedisError):
                raise answer

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
    """One sample's value. A sample the process does not export fails the test
    (never reads as 0: a renamed metric must not pass a `== 0` check)."""
    got = metrics(port)
    key = (name, frozenset(labels.items()))
    if key not in got:
        same_name = sorted(dict(ls) for n, ls in got if n == name)
        pytest.fail(f"no sample {name}{labels} on port {port}; "
                    f"samples of {name}: {same_name or 'none'}")
    return got[key]


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


def wait_started(proc, n, job_type, timeout=15):
    """Wait until the worker itself runs n jobs of a type. A job's hash says
    `running` as soon as the take script ran in Redis, before the worker has
    read the answer: a worker signalled in between never starts that job (a
    stopping worker puts it back), so a test about a job in hand waits here."""
    poll_until(lambda: metric(proc.admin_port, "surge_jobs_in_progress", type=job_type) >= n,
               timeout, what=f"{n} {job_type} job(s) started by the worker")


def readyz(proc):
    """(status code, JSON body) of a process's /readyz."""
    r = http(proc.admin_port, "GET", "/readyz", timeout=5)
    return r.status, r.json()


def down_with(proc, component):
    """/readyz's body when it is 503 and names component as down, else False."""
    status, body = readyz(proc)
    return status == 503 and body["checks"][component]["status"] != "ok" and body


def busiest_thread_cpu_seconds(pid):
    """CPU seconds used by the busiest thread of a process (a burn's thread)."""
    tick = os.sysconf("SC_CLK_TCK")
    best = 0.0
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread has ended
        best = max(best, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
    return best


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
                        f"{by_status}; e.g. {sample}; "
                        f"queues={[resp.call('LLEN', q) for q in QUEUES]} "
                        f"retry={resp.call('ZCARD', 'surge:retry')} "
                        f"dead={resp.call('LLEN', 'surge:dead')}")
        time.sleep(0.25)


def assert_invariants(resp, prefix="surge:"):
    """What holds whatever happened, once the workers are quiet: the queues,
    the dead list and the processing lists hold an id at most once, and each
    queue only ids of its own type; no id is both queued and in the retry
    set, nor in a processing list and waiting (queue or retry set)."""
    by_type = {t: resp.call("LRANGE", f"{prefix}queue:{t}", 0, -1) for t in JOB_TYPES}
    queue = [i for ids in by_type.values() for i in ids]
    misplaced = [(t, i) for t, ids in by_type.items() if ids
                 for i, h in zip(ids, resp.hashes([f"{prefix}job:{i}" for i in ids]))
                 if h.get("type", t) != t]
    retry = resp.call("ZRANGE", prefix + "retry", 0, -1)
    dead = resp.call("LRANGE", prefix + "dead", 0, -1)
    held = [i for k in resp.scan_keys(prefix + "processing:*")
            for i in resp.call("LRANGE", k, 0, -1)]

    def twice(ids):
        return sorted({i for i in ids if ids.count(i) > 1})
    problems = [f"{what}: {ids[:5]}" for what, ids in (
        ("ids queued twice", twice(queue)),
        ("ids on the queue of another type", misplaced),
        ("ids on the dead list twice", twice(dead)),
        ("ids held twice", twice(held)),
        ("ids both queued and in the retry set", sorted(set(queue) & set(retry))),
        ("ids both held and queued", sorted(set(held) & set(queue))),
        ("ids both held and in the retry set", sorted(set(held) & set(retry))),
    ) if ids]
    assert not problems, "\n".join(problems)


def assert_nothing_left(resp, timeout=15):
    """No id waits anywhere once every job has finished. An id whose BLMOVE
    answer was lost with a connection (Redis going away) sits in its worker's
    list until the worker's orphan check has seen it twice (5 s apart) and put
    it back, so the lists get that long to empty."""
    deadline = time.monotonic() + timeout
    while True:
        left = {q: resp.call("LLEN", q) for q in QUEUES}
        left.update({
            "surge:retry": resp.call("ZCARD", "surge:retry"),
            "surge:dead": resp.call("LLEN", "surge:dead"),
        })
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


class TableLock:
    """with TableLock(pg): another session holds ACCESS EXCLUSIVE on the items
    table until the block ends (or release()): reads, and the PREPARE of a
    connection opened meanwhile, wait for it."""

    _n = 0

    def __init__(self, pg):
        TableLock._n += 1
        self.pg = pg
        self.tag = f"surge-test-lock-{TableLock._n}"
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(
            [self.pg.psql_path, "-X", "-q", "-h", LOOPBACK, "-p", str(self.pg.port), "-U",
             "surge", "-d", "surge", "-c",
             f"BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; /* {self.tag} */ "
             "SELECT pg_sleep(600); COMMIT;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll_until(lambda: self.pg.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.relation = 'items'::regclass AND l.mode = 'AccessExclusiveLock' "
            f"AND l.granted AND a.query LIKE '%{self.tag}%'") == "1", 15, what="the table lock")
        return self

    _WAITING_READS = ("FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                      "AND query LIKE 'SELECT row_to_json%'")

    def reads_waiting(self):
        """How many reads (a worker's prepared SELECT) wait on a lock now."""
        return int(self.pg.psql(f"SELECT count(*) {self._WAITING_READS}"))

    def wait_for_reads(self, n, timeout=15):
        """Waits until n reads wait on the lock: their workers have started
        them, not only marked their jobs running."""
        poll_until(lambda: self.reads_waiting() == n, timeout, what=f"{n} read(s) waiting on the lock")

    def kill_waiting_reads(self):
        """Ends the sessions of the reads waiting on a lock; returns how many."""
        return int(self.pg.psql(f"SELECT count(pg_terminate_backend(pid)) {self._WAITING_READS}",
                                user="postgres"))

    def release(self):
        if self.proc is None:
            return
        # The server holds the lock until its session ends, not its client.
        self.pg.psql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     f"WHERE query LIKE '%{self.tag}%' AND pid <> pg_backend_pid()",
                     user="postgres")
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def __exit__(self, *exc):
        self.release()
        return False


def command_calls(resp, command):
    """How many times Redis ran a command since its last CONFIG RESETSTAT
    (INFO commandstats), 0 if never."""
    m = re.search(rf"cmdstat_{command}:calls=(\d+)", resp.call("INFO", "commandstats"))
    return int(m.group(1)) if m else 0


def most_at_once(hashes):
    """The most jobs running at once, by their own started_at/finished_at
    (at the same millisecond an end counts before a start)."""
    events = sorted([(h["started_at"], 1) for h in hashes] + [(h["finished_at"], -1) for h in hashes])
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def drain_a_burst(surge, api, resp, n, slots):
    """n reads posted while no worker runs, then one worker with `slots` read
    slots (debug log) drains them; Redis's command counts start with that
    worker. Returns (the worker, {id: its hash}) once every job is finished
    and the worker has been told so."""
    ids = [post_job(api.http_port, "/jobs/read", {"item_id": 1 + i * 331 % 100000})
           for i in range(n)]
    resp.call("CONFIG", "RESETSTAT")
    w = surge.worker(SURGE_WORKER_READ_CONCURRENCY=slots, SURGE_LOG_LEVEL="debug")
    states = wait_all_finished(resp, ids, timeout=120)
    poll_until(lambda: metric(w.admin_port, "surge_jobs_finished_total", type="read",
                              outcome="succeeded") == n, 30,
               what="the worker to be told every outcome is written")
    return w, states


class RedisProxy:
    """A TCP proxy to Redis on a port of its own, to cut some of a process's
    connections and not others. Modes: "pass" forwards everything; "refuse"
    closes every connection, open or new, at once; "fetch_only" closes every
    connection that has not sent a BLMOVE (a worker's fetch connections go on)
    and every new one; "hold" keeps what clients send (held()) until the mode
    is "pass" again. It notes when BLMOVEs go up a fetch connection and when
    answers come back."""

    def __init__(self, target_port, mode="pass"):
        self.target = target_port
        self.mode = mode
        self.lock = threading.Lock()
        self.pairs = []        # {"client", "server", "fetch"}
        self.refused = 0       # connections closed as they came
        self.blmoves = []      # monotonic times a BLMOVE went up
        self.answers = []      # monotonic times a fetch connection got an answer
        self.scripts = {}      # SHA-1 (hex, bytes) -> text of each script seen in an EVAL
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.port = free_port()
        self.listener.bind((LOOPBACK, self.port))
        self.listener.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"redis://{LOOPBACK}:{self.port}/0"

    @staticmethod
    def _close(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes the thread reading it
        except OSError:
            pass
        sock.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.mode not in ("pass", "hold"):
                    self.refused += 1
                    self._close(client)
                    continue
                try:
                    server = socket.create_connection((LOOPBACK, self.target), timeout=5)
                    server.settimeout(None)
                except OSError:
                    self._close(client)
                    continue
                pair = {"client": client, "server": server, "fetch": False}
                self.pairs.append(pair)
            threading.Thread(target=self._pump, args=(pair, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(pair, False), daemon=True).start()

    def _pump(self, pair, up):
        src, dst = (pair["client"], pair["server"]) if up else (pair["server"], pair["client"])
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            with self.lock:
                if up and self.mode == "hold":
                    pair.setdefault("held", bytearray()).extend(data)
                    continue
                if up:
                    self._note_scripts(data)
                if up and b"BLMOVE" in data:
                    pair["fetch"] = True
                    pair["waiting"] = True
                    pair["blmove"] = (time.monotonic(), bytes(data))
                    self.blmoves.append(time.monotonic())
                elif not up and pair["fetch"]:
                    pair["waiting"] = False
                    self.answers.append(time.monotonic())
            try:
                dst.sendall(data)
            except OSError:
                break
        with self.lock:
            pair["waiting"] = False  # a closed connection waits for nothing
        self._close(src)
        self._close(dst)

    _EVAL = re.compile(rb"\$4\r\nEVAL\r\n\$(\d+)\r\n")

    def _note_scripts(self, data):
        # A client sends a script's text with its first EVAL on a connection,
        # then only its SHA-1 (EVALSHA): remember which SHA-1 is which text.
        for m in self._EVAL.finditer(data):
            body = data[m.end():m.end() + int(m.group(1))]
            if len(body) == int(m.group(1)):
                self.scripts[hashlib.sha1(body).hexdigest().encode()] = body

    def held(self, pattern):
        """How many times pattern occurs in what the proxy holds."""
        with self.lock:
            return sum(bytes(p.get("held", b"")).count(pattern) for p in self.pairs)

    def held_script(self, marker):
        """How many calls of a script whose text holds marker the proxy holds:
        sent as EVAL (the text) or as EVALSHA (the SHA-1 of a text it passed)."""
        with self.lock:
            shas = [sha for sha, body in self.scripts.items() if marker in body]
            held = [bytes(p.get("held", b"")) for p in self.pairs]
        return sum(h.count(marker) + sum(h.count(sha) for sha in shas) for h in held)

    def set_mode(self, mode):
        with self.lock:
            self.mode = mode
            for pair in self.pairs:
                if mode != "hold" and pair.get("held"):
                    try:
                        pair["server"].sendall(pair.pop("held"))
                    except OSError:
                        pass
            for pair in self.pairs:
                if mode == "refuse" or (mode == "fetch_only" and not pair["fetch"]):
                    self._close(pair["client"])
                    self._close(pair["server"])
            self.pairs = [p for p in self.pairs if mode in ("pass", "hold") or
                          (mode == "fetch_only" and p["fetch"])]

    def fetching(self):
        with self.lock:
            return any(p["fetch"] for p in self.pairs)

    def waiting_since(self, queue):
        """How long (s) the BLMOVE of queue (bytes) waits for its answer, or
        None when none waits."""
        with self.lock:
            for p in self.pairs:
                if p.get("waiting") and queue in p["blmove"][1]:
                    return time.monotonic() - p["blmove"][0]
        return None

    def blmoves_since(self, t):
        with self.lock:
            return sum(1 for b in self.blmoves if b >= t)

    def fetch_idle(self):
        """No BLMOVE waits for its answer, on any fetch connection (a worker
        has one per job type): the last one each sent was answered."""
        with self.lock:
            return not any(p.get("waiting") for p in self.pairs)

    def close(self):
        self.listener.close()
        self.set_mode("refuse")


def production_redis(folder):
    """Redis as k8s/base/redis runs it: its redis.conf (appendfsync always,
    noeviction...) and its ACL users api, worker and keda with passwords, the
    ACL file built as the StatefulSet builds it (the SHA-256 of each password),
    plus a user `surge-test` for the tests' own look-ups. Returns the (not yet
    started) server and {user: password}."""
    folder.mkdir(parents=True, exist_ok=True)
    passwords = {u: secrets.token_hex(12) for u in ("api", "worker", "keda", "surge-test")}

    def sha(pw):
        return hashlib.sha256(pw.encode()).hexdigest()
    lines = []
    for line in (REPO_ROOT / "k8s/base/redis/users.acl.in").read_text().splitlines():
        if line.startswith("#"):
            continue
        for user in ("api", "worker", "keda"):
            line = line.replace(f"@{user.upper()}_PASSWORD@", "#" + sha(passwords[user]))
        lines.append(line)
    lines.append(f"user surge-test on #{sha(passwords['surge-test'])} ~* &* +@all")
    (folder / "users.acl").write_text("\n".join(lines) + "\n")
    conf = (REPO_ROOT / "k8s/base/redis/redis.conf").read_text()
    for line in ("appendfsync always", "aclfile /run/redis/users.acl", "dir /data"):
        assert f"\n{line}\n" in conf, f"k8s/base/redis/redis.conf has no line {line!r}: " \
                                      "update production_redis()"
    # Redis reads the file before the command line: its paths must exist here.
    data = folder / "data"
    conf = conf.replace("\naclfile /run/redis/users.acl\n", f"\naclfile {folder / 'users.acl'}\n")
    conf = conf.replace("\ndir /data\n", f"\ndir {data}\n")
    (folder / "redis.conf").write_text(conf)
    server = RedisServer(data, conf=folder / "redis.conf", user="surge-test",
                         password=passwords["surge-test"])
    return server, passwords


def registry_score(resp, name):
    """The worker's score in surge:workers (ms of its last beat), or None."""
    score = resp.call("ZSCORE", "surge:workers", name)
    return None if score is None else float(score)


def worker_uptime(resp, name):
    """The uptime (s) the worker's heartbeat says, or None without one."""
    value = resp.call("GET", heartbeat_key(name))
    return json.loads(value)["uptime_seconds"] if value else None


def wait_beats(resp, name, n, timeout=30):
    """Waits until the worker's heartbeat says n more seconds of uptime: its
    event loop has turned that long, whatever the machine's load."""
    poll_until(lambda: worker_uptime(resp, name) is not None, 10, what=f"{name}'s heartbeat")
    first = worker_uptime(resp, name)
    poll_until(lambda: worker_uptime(resp, name) >= first + n, timeout, interval=0.1,
               what=f"{n} more seconds of heartbeats of worker {name}")
