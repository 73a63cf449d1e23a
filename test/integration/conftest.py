"""Fixtures of the integration tests: a real PostgreSQL 15 seeded once per
run, a fresh Redis per test, and the surge binaries from $SURGE_BIN_DIR
(build/release by default). A missing binary or server program fails the
tests; it never skips them."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import helpers  # noqa: E402


# Shared with the other suites (test/monitoring, test/valgrind).
from surge_fixtures import (  # noqa: E402,F401
    binaries,
    postgres,
    production,
    pytest_report_header,
    pytest_runtest_makereport,
    redis,
    surge,
)


@pytest.fixture
def api(surge):
    """A running surge-api with default test settings."""
    return surge.api()


@pytest.fixture
def worker(surge):
    """A running surge-worker with default test settings."""
    return surge.worker()
