"""Fixtures of the monitoring and demonstration tests: real Redis,
PostgreSQL, surge-api and surge-worker from test/integration/helpers.py
(imported, not copied), Prometheus from Debian, and the tools in tools/.
A missing program fails the run; nothing is skipped."""
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "test" / "integration"))
sys.path.insert(0, str(ROOT / "tools"))

import helpers  # noqa: E402


def require(program):
    path = shutil.which(program)
    if not path:
        pytest.fail(f"{program} is missing: run `make deps` (scripts/install-deps.sh installs "
                    "Debian's prometheus package, which has prometheus and promtool)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture(scope="session")
def postgres():
    pg = helpers.PostgresServer()
    try:
        pg.init().start().setup_surge()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def redis(tmp_path):
    r = helpers.RedisServer(tmp_path / "redis")
    r.start()
    yield r
    r.stop()


@pytest.fixture
def surge(request, redis, postgres, tmp_path):
    s = helpers.Surge(redis, postgres, tmp_path)
    yield s
    problems = s.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if problems or (failed is not None and failed.failed):
        for p in s.procs:
            print(f"----- {p.name} pid {p.pid} ({p.stderr_path}) -----")
            print(helpers.tail(p.stderr_path, 60))
    if problems:
        pytest.fail("\n\n".join(problems))


def pytest_terminal_summary(terminalreporter):
    try:
        from test_live_prometheus import EXCLUDED
    except ImportError:
        return
    if not EXCLUDED:
        return
    tr = terminalreporter
    tr.section("expressions not required to return data (kube-state-metrics, cAdvisor, KEDA)")
    seen = set()
    for where, expr in EXCLUDED:
        if (where, expr) in seen:
            continue
        seen.add((where, expr))
        tr.write_line(f"{where}: {' '.join(expr.split())}")
