"""Fixtures of the valgrind run: the same real PostgreSQL and Redis as the
integration tests (test/integration/helpers.py), on free loopback ports.
This folder runs once, from `make test` (mk/reliability.mk), on the release
binaries: valgrind and AddressSanitizer do not mix."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

# The same servers as the integration tests.
from surge_fixtures import postgres, redis  # noqa: E402,F401
