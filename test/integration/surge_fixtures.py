"""The fixtures every pytest suite of surge shares (integration, monitoring,
valgrind): a real PostgreSQL 15 seeded once per run, a fresh Redis per test,
and the surge binaries from $SURGE_BIN_DIR (build/release by default) as
processes. A suite's conftest.py imports what it uses from here. A missing
binary or server program fails the tests; it never skips them."""

import pytest

import helpers
import reliability


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


def pytest_report_header(config):
    return f"surge binaries: {helpers.bin_dir()}"


@pytest.fixture(scope="session")
def binaries():
    """Paths of surge-api and surge-worker; fails when one is missing."""
    out = {}
    for name in ("surge-api", "surge-worker"):
        p = helpers.bin_dir() / name
        if not p.is_file():
            pytest.fail(f"{p} is missing: build it first (`make` or `make san`)")
        out[name] = p
    return out


@pytest.fixture(scope="session")
def postgres():
    """PostgreSQL 15 on 127.0.0.1 with role and database `surge`, the items
    table and its 100 000 rows; one per test run (seeding takes seconds)."""
    pg = helpers.PostgresServer()
    try:
        pg.init().start().setup_surge()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def redis(tmp_path):
    """A fresh redis-server (appendonly) on a free loopback port."""
    r = helpers.RedisServer(tmp_path / "redis")
    r.start()
    yield r
    r.stop()


@pytest.fixture
def surge(request, redis, postgres, tmp_path, binaries):
    """Starts surge-api / surge-worker: surge.api(**env), surge.worker(**env).
    At teardown every process gets SIGTERM; the test fails if one had to be
    killed or printed a sanitizer report."""
    yield from _surge(request, redis, postgres, helpers.Surge(redis, postgres, tmp_path))


@pytest.fixture
def production(request, postgres, tmp_path, binaries):
    """Like surge, against a Redis run as production runs it
    (reliability.production_redis: its configuration, appendfsync always, ACL
    users with passwords); production.redis is that server."""
    server, passwords = reliability.production_redis(tmp_path / "production-redis")
    server.start()
    try:
        yield from _surge(request, server, postgres,
                          helpers.Surge(server, postgres, tmp_path, redis_passwords=passwords))
    finally:
        server.stop()


def _surge(request, redis, postgres, s):
    yield s
    problems = s.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if problems or (failed is not None and failed.failed):
        for p in s.procs:
            print(f"----- {p.name} pid {p.pid} stderr ({p.stderr_path}) -----")
            print(helpers.tail(p.stderr_path, 80))
        print(f"----- redis log -----\n{helpers.tail(redis.log, 20)}")
        print(f"----- postgres log -----\n{helpers.tail(postgres.log, 20)}")
    if problems:
        pytest.fail("\n\n".join(problems))
