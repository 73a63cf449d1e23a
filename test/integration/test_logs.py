"""What the binaries write on stderr: one JSON object per line by default
(SURGE_LOG_FORMAT=json), and never a password or a secret, whatever goes
wrong."""

import json
import re

from helpers import (ISO_MS_UTC, RedisServer, Surge, assert_error, http, poll_job, post_job,
                     run_to_exit, wait_for)

LOG_KEYS = {"ts", "level", "app", "event", "msg"}
EVENT = re.compile(r"^[a-z][a-z0-9_]*$")


def json_lines(text, app):
    """Every line of text as a log object; fails on a line that is not one."""
    lines = text.splitlines()
    assert lines, f"{app} wrote nothing"
    out = []
    for line in lines:
        try:
            obj = json.loads(line)
        except ValueError:
            raise AssertionError(f"{app}: a log line that is not JSON: {line!r}") from None
        assert isinstance(obj, dict) and set(obj) == LOG_KEYS, f"{app}: {line!r}"
        assert ISO_MS_UTC.match(obj["ts"]), line
        assert obj["level"] in ("debug", "info", "warn", "error"), line
        assert obj["app"] == app, line
        assert EVENT.match(obj["event"]), line
        assert isinstance(obj["msg"], str), line
        out.append(obj)
    return out


def test_json_is_the_default_log_format(surge):
    api = surge.api(SURGE_LOG_FORMAT=None, SURGE_LOG_LEVEL="debug")
    worker = surge.worker(SURGE_LOG_FORMAT=None, SURGE_LOG_LEVEL="debug")
    assert poll_job(api.http_port, post_job(api.http_port, "/jobs/read", {"item_id": 11}))
    assert poll_job(api.http_port, post_job(api.http_port, "/jobs/read", {"item_id": 999999}))
    assert_error(http(api.http_port, "GET", "/jobs/nope"), 404, "not_found")
    for proc, app in ((api, "surge-api"), (worker, "surge-worker")):
        assert proc.stop() == 0
        events = {o["event"] for o in json_lines(proc.stderr_path.read_text(), app)}
        # The start and the end of a run are there, as JSON too.
        assert {"started", "shutdown_started", "stopped"} <= events, (app, events)


SECRETS = ("redis-Secret-0a1b2c", "wrong-Secret-3d4e5f", "dsn-Secret-6a7b8c", "pg-Secret-9d0e1f",
           "url-Secret-2a3b4c")


def test_passwords_are_never_logged(postgres, binaries, tmp_path):
    redis = RedisServer(tmp_path / "redis", password=SECRETS[0]).start()
    surge = Surge(redis, postgres, tmp_path)
    try:
        # The right password: everything works, at the most talkative level.
        api = surge.api(SURGE_REDIS_PASSWORD=SECRETS[0], SURGE_LOG_LEVEL="debug",
                        SURGE_LOG_FORMAT=None)
        worker = surge.worker(SURGE_REDIS_PASSWORD=SECRETS[0], SURGE_LOG_LEVEL="debug",
                              PGPASSWORD=SECRETS[3], SURGE_LOG_FORMAT=None)
        job = poll_job(api.http_port, post_job(api.http_port, "/jobs/read", {"item_id": 5}))
        assert job["status"] == "succeeded", job
        # A wrong Redis password: refused, and said so without the password.
        bad = surge.api(SURGE_REDIS_PASSWORD=SECRETS[1], SURGE_LOG_LEVEL="debug",
                        SURGE_LOG_FORMAT="text")
        wait_for(lambda: "redis_auth_failed" in bad.stderr(), 15,
                 message="the api to report the refused password")
        # A password in the PostgreSQL DSN of a worker that cannot connect.
        lost = surge.worker(wait=False, SURGE_REDIS_PASSWORD=SECRETS[0], SURGE_LOG_LEVEL="debug",
                            SURGE_PG_DSN=f"host=127.0.0.1 port=1 dbname=surge user=surge "
                                         f"password={SECRETS[2]} connect_timeout=2")
        wait_for(lambda: "postgres" in lost.stderr(), 20,
                 message="the worker to report PostgreSQL unreachable")
        # Credentials in the Redis URL are refused at start, without echoing them.
        env = surge.env("surge-api", SURGE_REDIS_URL=f"redis://u:{SECRETS[4]}@127.0.0.1:6379/0")
        code, start_err = run_to_exit("surge-api", env)
        assert code == 2 and "SURGE_REDIS_URL" in start_err, start_err
    finally:
        problems = surge.stop_all()
        redis.stop()
    assert not problems, problems
    logs = {p.stderr_path.name: p.stderr_path.read_text(errors="replace") for p in surge.procs}
    logs["surge-api (bad SURGE_REDIS_URL)"] = start_err
    for name, text in logs.items():
        for secret in SECRETS:
            assert secret not in text, f"{name} logged {secret!r}:\n{text[-3000:]}"
    assert "redis_auth_failed" in logs[bad.stderr_path.name]
