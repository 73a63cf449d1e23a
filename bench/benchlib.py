"""What bench.py builds on: progress lines, a cleanup stack that always runs,
Redis, PostgreSQL and the surge binaries as child processes, a tiny HTTP/1.1
and RESP client over raw sockets, and the statistics of repeated runs.

Standard library only. Every server listens on 127.0.0.1, on ports picked
free at run time; every load generator targets 127.0.0.1 only.
"""

import ctypes
import json
import os
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOOPBACK = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[1]
PG_BIN = Path(os.environ.get("SURGE_PG_BIN", "/usr/lib/postgresql/15/bin"))
TMP_PREFIX = "surge-bench-"

_t_start = time.monotonic()


class BenchError(Exception):
    """A step could not be measured; the message says why."""


def say(msg):
    """One progress line, with the seconds since the start."""
    print(f"bench [{time.monotonic() - _t_start:6.1f}s] {msg}", flush=True)


def tail(path, lines=30):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"<cannot read {path}: {e}>"


def require(program):
    p = shutil.which(program) if os.sep not in program else (program if os.access(program, os.X_OK) else None)
    if not p:
        raise BenchError(f"{program} is missing: run `scripts/install-deps.sh build run bench`")
    return p


def clean_env():
    """The environment for children, without SURGE_* or PG* settings from the shell."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SURGE_") and not k.startswith("PG")}


_ports_given = set()


def free_port():
    for _ in range(100):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise BenchError("no free port on 127.0.0.1")


def wait_until(predicate, timeout, what, interval=0.05, alive=None):
    """Calls predicate until it is truthy; alive() may raise to stop early."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        if alive:
            alive()
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below
            last = e
        if time.monotonic() >= deadline:
            raise BenchError(f"timed out after {timeout} s waiting for {what}"
                             + (f" (last error: {last!r})" if last else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------
# children die with us, and Ctrl-C reaches only us


_libc = None


def _die_with_parent():
    """preexec_fn: SIGTERM to the child if the bench itself dies (even by
    SIGKILL); a new process group so that Ctrl-C in the terminal reaches the
    bench, which stops its servers in order."""
    global _libc
    os.setpgrp()
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Cleanup:
    """A stack of undo steps that always runs: at the end, on failure, on
    Ctrl-C or SIGTERM (turned into KeyboardInterrupt)."""

    def __init__(self):
        self.steps = []

    def push(self, what, fn):
        self.steps.append((what, fn))
        return fn

    def run(self):
        # Ctrl-C again while cleaning must not leave servers behind.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            while self.steps:
                what, fn = self.steps.pop()
                try:
                    fn()
                except Exception as e:  # noqa: BLE001 - keep cleaning
                    print(f"bench: cleanup of {what} failed: {e}", file=sys.stderr)
        finally:
            signal.signal(signal.SIGINT, old)


def install_signal_handlers():
    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)


def stop_process(proc, timeout=20):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_tool(cmd, timeout, what):
    """Runs a load tool in the foreground; returns its stdout. The tool is
    killed on timeout or Ctrl-C (subprocess.run does it)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env=clean_env())
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} still running after {timeout} s: {' '.join(cmd)}")
    if r.returncode != 0:
        raise BenchError(f"{what} failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    return r.stdout


def stale_cleanup():
    """Stops what an earlier bench killed by SIGKILL left behind: PostgreSQL
    clusters in /tmp/surge-bench-* whose owner process is gone."""
    for base in Path(tempfile.gettempdir()).glob(TMP_PREFIX + "*"):
        owner = base / "owner.pid"
        try:
            pid = int(owner.read_text().strip())
            os.kill(pid, 0)
            continue  # still running: another bench, leave it alone
        except (OSError, ValueError):
            pass
        data = base / "pg"
        if (data / "postmaster.pid").exists():
            say(f"stopping PostgreSQL left over by an earlier bench in {base}")
            subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                                        "-w", "-t", "30", "stop"]),
                           capture_output=True, timeout=60, cwd="/")
        shutil.rmtree(base, ignore_errors=True)


def make_workdir(cleanup, keep=False):
    base = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=tempfile.gettempdir()))
    os.chmod(base, 0o755)  # postgres must reach its data folder inside
    (base / "owner.pid").write_text(str(os.getpid()))
    if not keep:
        cleanup.push("work folder", lambda: shutil.rmtree(base, ignore_errors=True))
    return base


# --------------------------------------------------------------------------
# Redis: a minimal RESP client


class Resp:
    """One connection to Redis; command() sends and reads one reply."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    @staticmethod
    def encode(*args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return b"".join(out)

    def send(self, *args):
        self.sock.sendall(self.encode(*args))

    def read(self):
        line = self.f.readline()
        if not line:
            raise ConnectionError("redis closed the connection")
        t, rest = line[:1], line[1:-2]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise BenchError(f"redis: {rest.decode()}")
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)
            return data[:-2].decode(errors="replace")
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise BenchError(f"redis: unexpected reply {line!r}")

    def command(self, *args):
        self.send(*args)
        return self.read()

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()


class RedisServer:
    def __init__(self, folder, cleanup):
        self.bin = require("redis-server")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.folder / "redis.log"
        self.proc = None
        self.conn = None
        self.cleanup = cleanup

    @property
    def url(self):
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self):
        # No persistence: the disk of a shared machine stays out of every
        # figure; the LPUSH ceiling runs on this same server.
        self.proc = subprocess.Popen(
            [self.bin, "--bind", LOOPBACK, "--port", str(self.port), "--dir", str(self.folder),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
             "--logfile", str(self.log)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            env=clean_env(), preexec_fn=_die_with_parent)
        self.cleanup.push("redis-server", self.stop)

        def ping():
            c = Resp(self.port, timeout=2)
            try:
                return c.command("PING") == "PONG"
            finally:
                c.close()
        wait_until(ping, 15, "redis-server to answer PING", alive=self.check_alive)
        self.conn = Resp(self.port)
        return self

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"redis-server exited with {self.proc.returncode}:\n{tail(self.log)}")

    def cmd(self, *args):
        return self.conn.command(*args)

    def stop(self):
        if self.conn:
            self.conn.close()
            self.conn = None
        stop_process(self.proc)


# --------------------------------------------------------------------------
# PostgreSQL


def as_postgres(cmd):
    """initdb and pg_ctl refuse root: run them as `postgres` then."""
    if os.geteuid() == 0:
        return [require("runuser"), "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    def __init__(self, folder, cleanup):
        for p in ("initdb", "pg_ctl", "postgres"):
            if not os.access(PG_BIN / p, os.X_OK):
                raise BenchError(f"{PG_BIN / p} is missing: PostgreSQL 15 is needed "
                                 "(scripts/install-deps.sh run)")
        self.psql_bin = require("psql")
        self.base = Path(folder)
        self.base.mkdir(parents=True, exist_ok=True)
        self.data = self.base / "pg"
        self.sockdir = self.base / "pg-run"
        self.sockdir.mkdir(exist_ok=True)
        self.log = self.base / "postgres.log"
        self.port = free_port()
        self.cleanup = cleanup
        self.data.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.data, pw.pw_uid, pw.pw_gid)
            os.chown(self.sockdir, pw.pw_uid, pw.pw_gid)
            self.log.touch()
            os.chown(self.log, pw.pw_uid, pw.pw_gid)

    @property
    def dsn(self):
        return f"host={LOOPBACK} port={self.port} dbname=surge user=surge"

    def _run(self, cmd, what, timeout=120):
        r = subprocess.run(as_postgres(cmd), capture_output=True, text=True, timeout=timeout,
                           env=clean_env(), cwd="/", stdin=subprocess.DEVNULL,
                           preexec_fn=os.setpgrp)
        if r.returncode != 0:
            raise BenchError(f"{what} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail(self.log)}")
        return r

    def start(self):
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        # Read-only workload: durability settings change nothing measured here.
        opts = (f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.sockdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c timezone=UTC -c max_connections=100")
        self.cleanup.push("postgres", self.stop)
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w",
                   "-t", "60", "-o", opts, "start"], "pg_ctl start")
        self.psql("CREATE ROLE surge LOGIN", db="postgres", user="postgres")
        self.psql("CREATE DATABASE surge OWNER surge", db="postgres", user="postgres")
        self.psql(file=REPO_ROOT / "db" / "schema.sql")
        self.psql(file=REPO_ROOT / "db" / "seed.sql")
        n = int(self.psql("SELECT count(*) FROM items"))
        if n != 100000:
            raise BenchError(f"items holds {n} rows, not 100000")
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast",
                                        "-w", "-t", "60", "stop"]),
                           capture_output=True, timeout=90, env=clean_env(), cwd="/",
                           preexec_fn=os.setpgrp)

    def psql(self, sql=None, db="surge", user="surge", file=None):
        cmd = [self.psql_bin, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", LOOPBACK,
               "-p", str(self.port), "-U", user, "-d", db]
        cmd += ["-f", str(file)] if file else ["-c", sql]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=clean_env(),
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise BenchError(f"psql {sql or file} failed:\n{r.stderr}")
        return r.stdout.strip()


# --------------------------------------------------------------------------
# surge-api and surge-worker


class SurgeProcess:
    def __init__(self, name, bin_dir, env, log_dir, cleanup):
        self.name = name
        self.path = Path(bin_dir) / name.split("#")[0]
        if not os.access(self.path, os.X_OK):
            raise BenchError(f"{self.path} is missing: run `make` first")
        self.env = env
        self.admin_port = int(env["SURGE_ADMIN_PORT"])
        self.http_port = int(env.get("SURGE_HTTP_PORT", 0))
        self.log = Path(log_dir) / f"{name.replace('#', '-')}.log"
        self.proc = None
        self.cleanup = cleanup

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wrapper=()):
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([*wrapper, str(self.path)], env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=self.logf,
                                     stderr=subprocess.STDOUT, cwd=str(REPO_ROOT),
                                     preexec_fn=_die_with_parent)
        self.cleanup.push(self.name, self.stop)
        return self

    def check_alive(self):
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{tail(self.log)}")

    def wait_ready(self, timeout=30):
        def ready():
            return http_get(self.admin_port, "/readyz", timeout=2)[0] == 200
        wait_until(ready, timeout, f"{self.name} /readyz to answer 200", interval=0.1,
                   alive=self.check_alive)
        return self

    def stop(self, timeout=30):
        code = stop_process(self.proc, timeout)
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None
        return code

    def rss_kib(self):
        return read_rss_kib(self.pid)

    def metrics(self):
        status, body = http_get(self.admin_port, "/metrics", timeout=5)
        if status != 200:
            raise BenchError(f"{self.name} /metrics answered {status}")
        return parse_metrics(body)


def read_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


_METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$')


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric_sum(metrics, name, **labels):
    want = set(labels.items())
    return sum(v for (n, l), v in metrics.items() if n == name and want <= set(l))


# --------------------------------------------------------------------------
# HTTP/1.1 over a raw socket


def read_http_response(f):
    line = f.readline(65536)
    if not line:
        raise ConnectionError("connection closed before an answer")
    m = re.match(rb"^HTTP/1\.[01] (\d{3})", line)
    if not m:
        raise BenchError(f"bad status line {line!r}")
    status = int(m.group(1))
    length = 0
    while True:
        h = f.readline(65536)
        if h in (b"\r\n", b""):
            break
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = f.read(length) if length else b""
    return status, body.decode(errors="replace")


def http_request_bytes(method, path, body=None):
    head = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
    if body is not None:
        b = body.encode() if isinstance(body, str) else body
        head += f"Content-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n"
        return head.encode() + b
    return (head + "\r\n").encode()


def http_get(port, path, timeout=10):
    return http_call(port, "GET", path, timeout=timeout)


def http_call(port, method, path, body=None, timeout=10):
    with socket.create_connection((LOOPBACK, port), timeout=timeout) as s:
        s.sendall(http_request_bytes(method, path, body))
        with s.makefile("rb") as f:
            return read_http_response(f)


# --------------------------------------------------------------------------
# statistics of repeated runs


def summary(values):
    """{median, min, max, runs} of a list of numbers (None when empty)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals),
            "runs": list(values)}


def machine_info():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    except (OSError, AttributeError):
        mem_kib = 0
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = []
    kernel = os.uname().release
    return {"nproc": os.cpu_count(), "cpu_model": model, "mem_gib": round(mem_kib / 1048576, 1),
            "kernel": kernel, "loadavg_at_start": load}


def dump_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)
