"""Fixtures of the valgrind run: the same real PostgreSQL and Redis as the
integration tests (test/integration/helpers.py), on free loopback ports.
This folder runs once, from `make test` (mk/reliability.mk), on the release
binaries: valgrind and AddressSanitizer do not mix."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

import helpers  # noqa: E402


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
