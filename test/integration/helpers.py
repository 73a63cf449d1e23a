"""Helpers for the integration tests: real Redis and PostgreSQL servers in
temporary folders, the surge binaries as subprocesses, and a small HTTP/1.1
client over raw sockets (so that tests control every byte on the wire).

Everything listens on 127.0.0.1 only, on ports picked free at run time.
"""

import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("SURGE_PG_BIN", "/usr/lib/postgresql/15/bin"))
LOOPBACK = "127.0.0.1"

# A process whose stderr holds one of these failed, whatever the test saw.
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "runtime error:",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "SUMMARY: AddressSanitizer",
    "LeakSanitizer has encountered a fatal error",
    "WARNING: ThreadSanitizer",
    "SUMMARY: ThreadSanitizer",
)

FINAL_STATUSES = ("succeeded", "failed", "dead")
# The job types, and the queue of each as common/job.c names them.
JOB_TYPES = ("read", "burn")
QUEUES = tuple(f"surge:queue:{t}" for t in JOB_TYPES)
ERROR_CODES = {
    400: ("bad_request", "bad_json", "unknown_type", "bad_params", "bad_idempotency_key"),
    404: ("not_found",),
    405: ("method_not_allowed",),
    408: ("request_timeout",),
    411: ("length_required",),
    413: ("payload_too_large",),
    415: ("unsupported_media_type",),
    422: ("idempotency_key_reused",),
    431: ("headers_too_large",),
    503: ("unavailable",),
}
ISO_MS_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --------------------------------------------------------------------------
# small utilities


def bin_dir():
    """The folder holding surge-api and surge-worker: $SURGE_BIN_DIR, relative
    to the repository root when not absolute, build/release by default."""
    d = Path(os.environ.get("SURGE_BIN_DIR") or "build/release")
    if not d.is_absolute():
        d = REPO_ROOT / d
    return d


_ports_given = set()


def free_port():
    """A TCP port free on 127.0.0.1 right now, never the same one twice in a run."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("no free port found")


def port_is_open(port, host=LOOPBACK):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(predicate, timeout, interval=0.05, message="condition"):
    """Calls predicate until it returns something truthy, which is returned;
    fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            pytest.fail(f"timed out after {timeout} s waiting for {message}{extra}")
        time.sleep(interval)


def require_program(path):
    """Fails (never skips) when a program the tests need is missing."""
    p = Path(path) if os.sep in str(path) else shutil.which(str(path))
    if not p or not Path(p).is_file() or not os.access(p, os.X_OK):
        pytest.fail(f"required program {path} is missing: run `make deps` "
                    "(scripts/install-deps.sh build run test)")
    return str(p)


def clean_env():
    """The environment for child processes without any SURGE_* or PG* setting
    inherited from the shell that runs the tests."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SURGE_") and not k.startswith("PG")}


def tail(path, lines=60):
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(text.splitlines()[-lines:])


def sanitizer_report(text):
    """The part of text from the first sanitizer marker on, or None."""
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            start = text.rfind("\n", 0, i) + 1
            return text[start:start + 6000]
    return None


# --------------------------------------------------------------------------
# HTTP/1.1 over a raw socket


class Response:
    def __init__(self, status, reason, headers, body, version):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (repeats joined by ", ")
        self.body = body
        self.version = version

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            pytest.fail(f"answer {self.status} is not JSON: {self.body[:500]!r}")

    def __repr__(self):
        return (f"<{self.status} {self.reason} headers={self.headers} "
                f"body={self.body[:500]!r}>")


class ConnectionClosed(Exception):
    pass


def read_response(f, method="GET"):
    """Reads one HTTP/1.1 answer from the binary file object f (a socket's
    makefile('rb')). The body is framed by Content-Length (or chunked
    encoding); an answer with neither is read to the end of the stream."""
    line = f.readline(65536)
    if not line:
        raise ConnectionClosed("connection closed before an answer")
    m = re.match(rb"^(HTTP/1\.[01]) (\d{3})(?: (.*))?\r\n$", line)
    if not m:
        raise AssertionError(f"bad status line {line!r}")
    version, status, reason = m.group(1).decode(), int(m.group(2)), (m.group(3) or b"").decode()
    headers = {}
    while True:
        h = f.readline(65536)
        if not h:
            raise ConnectionClosed("connection closed inside the answer's headers")
        if h == b"\r\n":
            break
        assert h.endswith(b"\r\n"), f"header line not ended by CRLF: {h!r}"
        name, sep, value = h[:-2].decode("latin-1").partition(":")
        assert sep, f"bad header line {h!r}"
        name = name.strip().lower()
        value = value.strip()
        headers[name] = headers[name] + ", " + value if name in headers else value
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    elif "content-length" in headers:
        n = int(headers["content-length"])
        body = f.read(n)
        if len(body) != n:
            raise ConnectionClosed(f"body cut short: {len(body)} of {n} bytes")
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int(f.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline(65536) not in (b"\r\n", b""):
                    pass
                break
            chunks.append(f.read(size))
            f.readline(16)
        body = b"".join(chunks)
    else:
        body = f.read()
    return Response(status, reason, headers, body, version)


def build_request(method, path, body=None, headers=None, content_type="application/json"):
    """The bytes of one request. body may be bytes, str or a JSON-able object;
    Content-Length is added for a body unless headers already frame it.
    A header given as None is left out."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    h = {"Host": f"{LOOPBACK}"}
    if body is not None:
        if content_type is not None:
            h["Content-Type"] = content_type
        h["Content-Length"] = str(len(body))
    for k, v in (headers or {}).items():
        for existing in list(h):
            if existing.lower() == k.lower():
                del h[existing]
        if v is not None:
            h[k] = v
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    return head.encode("latin-1") + (body or b"")


class Client:
    """One keep-alive connection to a server on 127.0.0.1."""

    def __init__(self, port, timeout=10):
        self.sock = socket.create_connection((LOOPBACK, port), timeout=timeout)
        self.f = self.sock.makefile("rb")

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method, path, body=None, headers=None, content_type="application/json"):
        self.send(build_request(method, path, body, headers, content_type))
        return read_response(self.f, method)

    def read(self, method="GET"):
        return read_response(self.f, method)

    def is_closed_by_peer(self, timeout=2):
        """True when the server closed the connection (EOF or reset) within timeout."""
        self.sock.settimeout(timeout)
        try:
            return self.f.read(1) == b""
        except ConnectionResetError:
            return True
        except (socket.timeout, TimeoutError):
            return False

    def close(self):
        try:
            self.f.close()
        finally:
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def http(port, method, path, body=None, headers=None, content_type="application/json", timeout=10):
    """One request on a fresh connection; returns the Response."""
    with Client(port, timeout) as c:
        return c.request(method, path, body, headers, content_type)


def assert_error(resp, status, code=None):
    """resp is `status` with a JSON body {"error":{"code","message"}} whose
    code is `code` (or one documented for that status); returns the error."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    ctype = resp.header("content-type", "")
    assert ctype.split(";")[0].strip() == "application/json", f"error not JSON: {resp!r}"
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"bad error body {body!r}"
    err = body["error"]
    assert isinstance(err, dict), f"bad error body {body!r}"
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str), \
        f"error needs string code and message: {body!r}"
    assert err["message"], f"empty error message: {body!r}"
    if code is not None:
        assert err["code"] == code, f"expected code {code!r}, got {body!r}"
    else:
        assert err["code"] in ERROR_CODES.get(status, ()), f"undocumented code for {status}: {body!r}"
    return err


def post_job(port, path="/jobs", body=None, expect=202):
    """POSTs a job and checks the 202 answer; returns its id."""
    r = http(port, "POST", path, body)
    assert r.status == expect, f"POST {path} {body!r}: {r!r}"
    j = r.json()
    assert isinstance(j.get("id"), str) and j["id"], r
    assert r.header("location") == f"/jobs/{j['id']}", r
    assert j["status"] == "queued", r
    return j["id"]


def queued(redis):
    """Every id waiting on the queue of any type (RedisServer)."""
    return [i for q in QUEUES for i in redis.lines("LRANGE", q, 0, -1)]


def get_job(port, job_id):
    r = http(port, "GET", f"/jobs/{job_id}")
    assert r.status == 200, f"GET /jobs/{job_id}: {r!r}"
    return r.json()


def poll_job(port, job_id, statuses=FINAL_STATUSES, timeout=30):
    """GETs /jobs/{id} until its status is one of statuses; fails with the
    last answer seen after timeout seconds. A `failed` job with a `retry_at`
    waits for another attempt: it is not final, and only "failed" asked for
    by name matches it."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            r = http(port, "GET", f"/jobs/{job_id}", timeout=5)
            last = r
            job = r.json() if r.status == 200 else {}
            waiting = job.get("status") == "failed" and job.get("retry_at") is not None
            if job.get("status") in statuses and not (waiting and statuses is FINAL_STATUSES):
                return job
        except (OSError, ConnectionClosed) as e:
            last = e
        if time.monotonic() >= deadline:
            pytest.fail(f"job {job_id} not in {statuses} after {timeout} s; last answer: {last!r}")
        time.sleep(0.1)


# --------------------------------------------------------------------------
# Redis


class RedisServer:
    """redis-server on 127.0.0.1:port with its files in folder (appendonly).
    With conf, the server reads that configuration file (the address, port,
    folder and log file still come from here) and the tests log in as user
    with password (reliability.production_redis). With a password and no
    conf, the default user needs it (requirepass)."""

    def __init__(self, folder, port=None, conf=None, user=None, password=None):
        self.server = require_program("redis-server")
        self.cli_path = require_program("redis-cli")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.log = self.folder / "redis.log"
        self.conf = conf
        self.user = user
        self.password = password

    @property
    def url(self):
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self):
        if port_is_open(self.port):
            pytest.fail(f"port {self.port} is already taken; cannot start redis-server there")
        if self.conf:
            settings = [str(self.conf)]
        else:
            settings = ["--appendonly", "yes", "--save", "", "--protected-mode", "yes"]
        self.proc = subprocess.Popen(
            [self.server, *settings, "--bind", LOOPBACK, "--port", str(self.port),
             "--dir", str(self.folder), "--daemonize", "no", "--logfile", str(self.log),
             *(["--requirepass", self.password] if self.password and not self.conf else [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            env=clean_env())
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                if self.cli("PING") == "PONG":
                    return self
            except subprocess.SubprocessError:
                pass
            if time.monotonic() >= deadline:
                self.stop()
                pytest.fail(f"redis-server did not answer PING within 15 s:\n{tail(self.log)}")
            time.sleep(0.05)

    def kill(self):
        """SIGKILL, as in a crash: only what Redis had written to disk remains."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(15)
        self.proc = None

    def stop(self):
        """Stops the server (SIGTERM, which writes the append-only file)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cli(self, *args):
        """Runs redis-cli against this server; returns its stripped output."""
        login = []
        if self.password and self.user:
            login = ["--user", self.user, "--pass", self.password, "--no-auth-warning"]
        elif self.password:
            login = ["--no-auth-warning", "-a", self.password]
        r = subprocess.run([self.cli_path, "-h", LOOPBACK, "-p", str(self.port), *login,
                            *map(str, args)],
                           capture_output=True, text=True, timeout=10, env=clean_env())
        if r.returncode != 0:
            raise subprocess.SubprocessError(f"redis-cli {args}: {r.stderr or r.stdout}")
        return r.stdout.rstrip("\n")

    def lines(self, *args):
        out = self.cli(*args)
        return out.split("\n") if out else []

    def hgetall(self, key):
        items = self.lines("HGETALL", key)
        assert len(items) % 2 == 0, f"odd HGETALL output for {key}: {items!r}"
        return dict(zip(items[0::2], items[1::2]))


# --------------------------------------------------------------------------
# PostgreSQL


def _as_postgres(cmd):
    """initdb and pg_ctl refuse to run as root: run them as `postgres` then."""
    if os.geteuid() == 0:
        return [require_program("runuser"), "-u", "postgres", "--", *cmd]
    return cmd


class PostgresServer:
    """A PostgreSQL 15 cluster in a folder under /tmp, on 127.0.0.1:port, with
    its unix socket inside the folder and trust authentication (loopback only)."""

    def __init__(self):
        for p in ("initdb", "pg_ctl", "postgres"):
            require_program(PG_BIN / p)
        self.psql_path = require_program("psql")
        # Under /tmp (not pytest's 0700 folder) so that `postgres` can reach it.
        self.base = Path(tempfile.mkdtemp(prefix="surge-it-pg-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.data = self.base / "data"
        self.sockdir = self.base / "run"
        self.sockdir.mkdir()
        self.log = self.base / "postgres.log"
        self.port = free_port()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in (self.base, self.sockdir):
                os.chown(p, pw.pw_uid, pw.pw_gid)

    @property
    def dsn(self):
        return f"host={LOOPBACK} port={self.port} dbname=surge user=surge"

    def _run(self, cmd, what, timeout=120):
        r = subprocess.run(_as_postgres(cmd), capture_output=True, text=True, timeout=timeout,
                           env=clean_env(), cwd="/")
        if r.returncode != 0:
            pytest.fail(f"{what} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail(self.log)}")
        return r

    def init(self):
        self._run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                   "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        return self

    def start(self):
        opts = (f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.sockdir} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c timezone=UTC")
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                   "-w", "-t", "60", "-o", opts, "start"], "pg_ctl start")
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data),
                                         "-m", "fast", "-w", "-t", "60", "stop"]),
                           capture_output=True, timeout=90, env=clean_env(), cwd="/")

    def destroy(self):
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def psql(self, sql=None, db="surge", user="surge", file=None):
        """Runs SQL (or a file) with psql; returns unaligned, tuples-only output."""
        cmd = [self.psql_path, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
               "-h", LOOPBACK, "-p", str(self.port), "-U", user, "-d", db]
        cmd += ["-f", str(file)] if file else ["-c", sql]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=clean_env())
        if r.returncode != 0:
            pytest.fail(f"psql {sql or file} failed:\n{r.stderr}")
        return r.stdout.rstrip("\n")

    def setup_surge(self):
        """Role and database `surge`, the items table and its 100 000 rows;
        and a role `surge_noread` that may log in but not read the items, for
        reads that fail while PostgreSQL is up (`noread_dsn`)."""
        self.psql("CREATE ROLE surge LOGIN", db="postgres", user="postgres")
        self.psql("CREATE ROLE surge_noread LOGIN", db="postgres", user="postgres")
        self.psql("CREATE DATABASE surge OWNER surge", db="postgres", user="postgres")
        self.psql(file=REPO_ROOT / "db" / "schema.sql")
        self.psql(file=REPO_ROOT / "db" / "seed.sql")
        return self

    @property
    def noread_dsn(self):
        """Connects and prepares, but every read fails: permission denied."""
        return f"host={LOOPBACK} port={self.port} dbname=surge user=surge_noread"

    def item_json(self, item_id):
        out = self.psql(f"SELECT row_to_json(i)::text FROM items i WHERE id = {int(item_id)}")
        return json.loads(out) if out else None


# --------------------------------------------------------------------------
# surge-api and surge-worker


class SurgeProcess:
    """One surge binary as a subprocess, stderr captured to a file."""

    def __init__(self, name, env, log_dir, nofile=None):
        self.name = name
        self.nofile = nofile  # RLIMIT_NOFILE (soft and hard) of the process, or None
        self.path = bin_dir() / name
        if not self.path.is_file() or not os.access(self.path, os.X_OK):
            pytest.fail(f"{self.path} is missing: build it first (`make` or `make san`), "
                        f"SURGE_BIN_DIR={os.environ.get('SURGE_BIN_DIR', '')!r}")
        self.env = env
        self.admin_port = int(env["SURGE_ADMIN_PORT"])
        self.http_port = int(env["SURGE_HTTP_PORT"]) if name == "surge-api" else None
        n = len(list(Path(log_dir).glob(f"{name}-*.stderr")))
        self.stderr_path = Path(log_dir) / f"{name}-{n}.stderr"
        self.proc = None
        self.killed = False
        self.stopped = False  # set once the test or the fixture ends the process

    @property
    def pid(self):
        return self.proc.pid

    def start(self, wait=True):
        self.stderr_file = open(self.stderr_path, "wb")
        limit = self.nofile

        def set_limits():
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        self.proc = subprocess.Popen([str(self.path)], env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self.stderr_file, stderr=self.stderr_file,
                                     cwd=str(REPO_ROOT), preexec_fn=set_limits)
        if wait:
            self.wait_healthy()
        return self

    def stderr(self):
        self.stderr_file.flush()
        return self.stderr_path.read_text(errors="replace")

    def wait_healthy(self, timeout=15):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            if self.proc.poll() is not None:
                self.stopped = True  # reported here, not again at teardown
                pytest.fail(f"{self.name} exited with {self.proc.returncode} before /healthz "
                            f"answered:\n{self.stderr()[-6000:]}")
            try:
                r = http(self.admin_port, "GET", "/healthz", timeout=2)
                if r.status == 200:
                    return
                last = r
            except (OSError, ConnectionClosed, AssertionError) as e:
                last = e
            if time.monotonic() >= deadline:
                pytest.fail(f"{self.name} /healthz on port {self.admin_port} not 200 within "
                            f"{timeout} s (last: {last!r}):\n{self.stderr()[-6000:]}")
            time.sleep(0.05)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=None):
        """SIGTERM, then SIGKILL if still running after timeout seconds
        (default: the shutdown grace period plus 10 s). Returns the exit code."""
        if self.proc is None:
            return None
        self.stopped = True
        if self.proc.poll() is None:
            if timeout is None:
                timeout = int(self.env.get("SURGE_SHUTDOWN_GRACE_SECONDS", "30")) + 10
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
        self.stderr_file.close()
        return self.proc.returncode

    def wait_exit(self, timeout):
        self.stopped = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running {timeout} s later:\n{self.stderr()[-4000:]}")


class Surge:
    """Starts surge-api and surge-worker processes against one Redis and one
    PostgreSQL; every process is stopped at the end of the test, which fails if
    one needed SIGKILL or printed a sanitizer report."""

    def __init__(self, redis, postgres, log_dir, redis_passwords=None):
        self.redis = redis
        self.postgres = postgres
        self.log_dir = Path(log_dir)
        self.procs = []
        # {ACL user: password}: the api logs in as "api", a worker as "worker".
        self.redis_passwords = redis_passwords

    def env(self, name, **overrides):
        env = clean_env()
        env.update({
            "SURGE_REDIS_URL": self.redis.url if self.redis else f"redis://{LOOPBACK}:1/0",
            "SURGE_PG_DSN": self.postgres.dsn if self.postgres else f"host={LOOPBACK} port=1 dbname=surge user=surge",
            "SURGE_BIND_ADDRESS": LOOPBACK,
            "SURGE_ADMIN_PORT": str(free_port()),
            "SURGE_HTTP_PORT": str(free_port()),
            "SURGE_LOG_FORMAT": "text",
            "SURGE_SHUTDOWN_GRACE_SECONDS": "5",
        })
        if self.redis_passwords:
            user = "api" if name == "surge-api" else "worker"
            env["SURGE_REDIS_USERNAME"] = user
            env["SURGE_REDIS_PASSWORD"] = self.redis_passwords[user]
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for k, v in overrides.items():
            if v is None:
                env.pop(k, None)  # left unset: the binary's default
            else:
                env[k] = str(v)
        return env

    def start(self, name, wait=True, nofile=None, **overrides):
        p = SurgeProcess(name, self.env(name, **overrides), self.log_dir, nofile)
        self.procs.append(p)
        return p.start(wait)

    def api(self, wait=True, nofile=None, **overrides):
        return self.start("surge-api", wait, nofile, **overrides)

    def worker(self, wait=True, **overrides):
        return self.start("surge-worker", wait, **overrides)

    def stop_all(self):
        """Stops every process; returns a list of problems found."""
        problems = []
        for p in reversed(self.procs):
            if not p.stopped and p.proc.poll() is not None:
                problems.append(f"{p.name} (pid {p.pid}) exited by itself with code "
                                f"{p.proc.returncode}:\n{tail(p.stderr_path, 40)}")
            was_running = p.running()
            code = p.stop()
            if was_running and not p.killed and code != 0:
                how = (f"was killed by signal {-code}" if code < 0 else f"exited with code {code}")
                problems.append(f"{p.name} (pid {p.pid}) {how} after SIGTERM:\n"
                                f"{tail(p.stderr_path, 40)}")
            if p.killed:
                problems.append(f"{p.name} (pid {p.pid}) did not exit after SIGTERM and was "
                                f"killed:\n{tail(p.stderr_path, 40)}")
            report = sanitizer_report(p.stderr_path.read_text(errors="replace"))
            if report:
                problems.append(f"{p.name} (pid {p.pid}) sanitizer report:\n{report}")
        return problems


def run_to_exit(name, env, timeout=10):
    """Runs a surge binary expected to stop by itself; returns (code, stderr)."""
    path = bin_dir() / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: build it first")
    try:
        r = subprocess.run([str(path)], env=env, capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} still running after {timeout} s; stderr: {e.stderr!r}")
    return r.returncode, r.stderr
