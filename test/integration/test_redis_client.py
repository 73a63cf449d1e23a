"""common/redis_client.c and its event adapter (common/redis_uv_adapter.c):
Lua scripts go as EVALSHA and survive Redis losing its scripts (NOSCRIPT,
then EVAL, transparently); the commands queued in one loop turn leave in one
write, and the Redis socket's poll is not touched per command."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time

from helpers import build_request, read_response
from reliability import (Resp, Submitter, assert_invariants, assert_nothing_left, command_calls,
                         poll_until, readyz, wait_all_finished)

STRACE = shutil.which("strace")


def _ready(p):
    return readyz(p)[0] == 200


def _info(resp, section):
    """INFO section as {field: value}."""
    text = resp.call("INFO", section)
    text = text.decode() if isinstance(text, bytes) else text
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def test_scripts_run_as_evalsha_and_survive_script_flush(surge, redis):
    """Jobs are posted while Redis forgets its scripts again and again
    (SCRIPT FLUSH every 20 ms): the api's and the workers' EVALSHAs meet
    NOSCRIPT, fall back to EVAL inside redis_client, and every job is still
    accepted (202), runs and succeeds; nothing is lost or left behind. Then,
    after one more flush, a script is loaded (EVAL) at most once per
    connection."""
    api = surge.api()
    workers = [surge.worker(), surge.worker()]
    for p in [api, *workers]:
        poll_until(lambda: _ready(p), 15, what=f"{p.name} ready")
    resp = Resp(redis.port)
    resp.call("CONFIG", "RESETSTAT")

    sub = Submitter(api.http_port, total=400, rate=200, threads=4, seed=5).start()
    flusher = Resp(redis.port)
    flushes = 0
    while sub.count() < 400 and flushes < 2000:
        flusher.call("SCRIPT", "FLUSH")
        flushes += 1
        time.sleep(0.02)
    sub.join()
    assert sub.count() == 400, (sub.count(), sub.refused, sub.errors)
    assert not sub.refused, sub.refused
    ids = sub.ids()
    wait_all_finished(resp, ids, timeout=90)
    assert_nothing_left(resp)
    assert_invariants(resp)
    evalsha, eval_ = command_calls(resp, "evalsha"), command_calls(resp, "eval")
    print(f"\n{len(ids)} jobs through {flushes} SCRIPT FLUSHes: all succeeded; "
          f"EVALSHA {evalsha}, EVAL {eval_}")
    assert evalsha >= len(ids), f"scripts not sent as EVALSHA: {evalsha} calls"
    assert eval_ >= 1, "no EVAL: the NOSCRIPT fallback never ran"

    # Quiet again: one flush, then sequential work. Each connection that runs
    # a script loads it once; a second EVAL of the same script on the same
    # connection would push the count past scripts x connections.
    poll_until(lambda: resp.call("LLEN", "surge:queue:read") == 0, 30, what="queues empty")
    resp.call("SCRIPT", "FLUSH")
    resp.call("CONFIG", "RESETSTAT")
    seq = Submitter(api.http_port, total=40, threads=1, seed=6).start()
    seq.join()
    wait_all_finished(resp, seq.ids(), timeout=60)
    scripts = int(_info(resp, "memory")["number_of_cached_scripts"])
    clients = int(_info(resp, "clients")["connected_clients"]) - 1  # not ours
    eval_ = command_calls(resp, "eval")
    print(f"after one flush: {eval_} EVAL for {scripts} scripts on {clients} connections")
    assert 1 <= eval_ <= scripts * clients, (eval_, scripts, clients)
    assert command_calls(resp, "evalsha") >= 40


def _redis_fds(pid, redis_port):
    """The process's file descriptors that are TCP connections to redis_port."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[2].rsplit(":", 1)[1], 16) == redis_port:
                inodes.add(f[9])
    fds = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", link)
        if m and m.group(1) in inodes:
            fds.add(int(fd))
    return fds


class Strace:
    """strace -f on a running process for the length of a with-block; calls()
    gives (name, fd, text, result) of each write and epoll_ctl (for
    epoll_ctl, fd is the descriptor being registered)."""

    def __init__(self, pid, out):
        self.pid, self.out = pid, out

    def __enter__(self):
        self.proc = subprocess.Popen(
            [STRACE, "-f", "-qq", "-s", "64", "-e", "trace=write,writev,epoll_ctl",
             "-o", str(self.out), "-p", str(self.pid)],
            stderr=subprocess.PIPE, text=True)
        # Attached once strace has written its first line about the process
        # or once a /proc status says the process is traced.
        poll_until(lambda: _tracer(self.pid) == self.proc.pid, 20, what="strace attached")
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)

    def calls(self):
        pat = re.compile(r"^(?:\d+\s+)?(write|writev|epoll_ctl)\((\d+), "
                         r"(?:EPOLL_CTL_\w+, (\d+))?(.*)\)\s+=\s+(-?\d+)")
        out = []
        for line in open(self.out):
            m = pat.match(line)
            if m:
                fd = int(m.group(3) if m.group(1) == "epoll_ctl" else m.group(2))
                out.append((m.group(1), fd, m.group(4), int(m.group(5))))
        return out


def _state(pid):
    """The one-letter state of a process (R, S, T...), from /proc."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("State:"):
            return line.split()[1]
    return ""


def _tracer(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def _post(sock_file, sock):
    sock.sendall(build_request("POST", "/jobs/read", {"item_id": 7}))
    return read_response(sock_file, "POST")


def test_commands_of_one_loop_turn_leave_in_one_write(surge, redis, tmp_path):
    """Traced with strace: 30 POSTs one after the other each send their
    EVALSHA in one write and register nothing with epoll for the Redis
    socket (hiredis's stock adapter added and dropped UV_WRITABLE for every
    command). Then the api is paused (SIGSTOP) while 20 clients each send a
    POST; on SIGCONT it reads them all in one loop turn, and their 20
    EVALSHAs reach Redis in a single write."""
    assert STRACE, "strace is missing: scripts/install-deps.sh test installs it"
    api = surge.api()
    poll_until(lambda: _ready(api), 15, what="api ready")
    n_conn = 20
    socks = [socket.create_connection(("127.0.0.1", api.http_port), timeout=30)
             for _ in range(n_conn)]
    files = [s.makefile("rb") for s in socks]
    # Every connection accepted and warm (one answered POST each).
    for s, f in zip(socks, files):
        assert _post(f, s).status == 202
    fds = _redis_fds(api.pid, redis.port)
    assert fds, "the api has no connection to Redis"

    with Strace(api.pid, tmp_path / "seq.strace") as tr:
        for _ in range(30):
            assert _post(files[0], socks[0]).status == 202
    calls = tr.calls()
    sha_writes = [c for c in calls if c[0] in ("write", "writev") and c[1] in fds
                  and "EVALSHA" in c[2]]
    polls = [c for c in calls if c[0] == "epoll_ctl" and c[1] in fds]
    assert len(sha_writes) == 30, sha_writes
    assert polls == [], f"epoll_ctl on the Redis socket: {polls}"
    one_command = sha_writes[0][3]
    assert all(w[3] == one_command for w in sha_writes), sha_writes

    # Stopped before strace attaches: SIGSTOP is delivered asynchronously,
    # and a request read before the api has stopped would leave in a write
    # of its own.
    api.signal(signal.SIGSTOP)
    try:
        poll_until(lambda: _state(api.pid) == "T", 10, what="the api stopped")
        with Strace(api.pid, tmp_path / "burst.strace") as tr:
            for s in socks:
                s.sendall(build_request("POST", "/jobs/read", {"item_id": 7}))
            api.signal(signal.SIGCONT)
            statuses = [read_response(f, "POST").status for f in files]
    finally:
        api.signal(signal.SIGCONT)
    assert statuses == [202] * n_conn, statuses
    calls = tr.calls()
    to_redis = [c for c in calls if c[0] in ("write", "writev") and c[1] in fds]
    sha_writes = [c for c in to_redis if "EVALSHA" in c[2]]
    print(f"\n{n_conn} POSTs read in one loop turn: {len(sha_writes)} write(s) to Redis of "
          f"{[w[3] for w in sha_writes]} bytes (one command: {one_command} bytes)")
    assert len(sha_writes) == 1, to_redis
    assert sha_writes[0][3] >= n_conn * one_command, (sha_writes, one_command)
    assert [c for c in calls if c[0] == "epoll_ctl" and c[1] in fds] == []
    for s in socks:
        s.close()
