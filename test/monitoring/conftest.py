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


# The same servers and processes as the integration tests.
from surge_fixtures import (  # noqa: E402,F401
    binaries,
    postgres,
    pytest_runtest_makereport,
    redis,
    surge,
)


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
