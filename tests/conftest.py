"""Shared fixtures: the real PostgreSQL and Redis services.

With REGOGATE_REQUIRE_SERVICES=1 (set by .ci/run) a missing service is a test *failure*;
without it (a laptop) the test is skipped with a message saying what to start.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.logscan import SessionLogHandler, assert_clean

POSTGRES_DSN = os.environ.get("REGOGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("REGOGATE_TEST_REDIS", "redis://127.0.0.1:6379/0")


SERVICE_TEST_TIMEOUT_S = 180


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test on a real service fails after SERVICE_TEST_TIMEOUT_S instead of hanging the
    suite (unless it sets its own pytest.mark.timeout)."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ())) & {"postgres_dsn", "redis_url"}
        if item.get_closest_marker("timeout") is None and (
                uses or item.get_closest_marker("postgres") or item.get_closest_marker("redis")):
            item.add_marker(pytest.mark.timeout(SERVICE_TEST_TIMEOUT_S))


def services_required() -> bool:
    return os.environ.get("REGOGATE_REQUIRE_SERVICES") == "1"


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _need(name: str, host: str, port: int) -> None:
    if _reachable(host, port):
        return
    msg = f"{name} is not reachable at {host}:{port}"
    if services_required():
        pytest.fail(f"{msg} (REGOGATE_REQUIRE_SERVICES=1: this service is required)")
    pytest.skip(f"{msg}; start it to run this test (CI requires it)")


@pytest.fixture
def postgres_dsn() -> Iterator[str]:
    _need("PostgreSQL", "127.0.0.1", 5432)
    yield POSTGRES_DSN


@pytest.fixture
def redis_url() -> Iterator[str]:
    _need("Redis", "127.0.0.1", 6379)
    yield REDIS_URL


# Every client a test opens on a real service has a bound on each wait (pytest-timeout bounds the
# test as a whole), so a service that stops answering, or a lock left behind by a failed test,
# makes a failure, never a hang.
SERVICE_TIMEOUT_S = 30.0


async def pg_connect(dsn: str) -> Any:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10, command_timeout=SERVICE_TIMEOUT_S)
    await conn.execute(f"SET lock_timeout = '{int(SERVICE_TIMEOUT_S)}s'")
    return conn


async def drop_pg_schema(dsn: str, schema: str) -> None:
    conn = await pg_connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close(timeout=10)


def redis_sync(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=SERVICE_TIMEOUT_S, socket_connect_timeout=10)


def redis_async(url: str) -> Any:
    import redis.asyncio as aioredis

    return aioredis.Redis.from_url(url, socket_timeout=SERVICE_TIMEOUT_S,
                                   socket_connect_timeout=10)


def drop_redis_prefix(url: str, prefix: str) -> None:
    with redis_sync(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


# --- no secret in any log line (tests/logscan.py) ---------------------------------------------

_LOG_HANDLER = SessionLogHandler()


@pytest.fixture(scope="session", autouse=True)
def _session_log_handler() -> Iterator[SessionLogHandler]:
    """Every record any logger emits during the session reaches this handler: the gateway's
    and aiohttp's loggers at DEBUG (what an operator turning up verbosity would see), the rest
    at INFO (the gateway's default level)."""
    root = logging.getLogger()
    saved = {name: logging.getLogger(name).level for name in ("", "regogate", "aiohttp")}
    root.addHandler(_LOG_HANDLER)
    root.setLevel(min(root.level or logging.INFO, logging.INFO))
    logging.getLogger("regogate").setLevel(logging.DEBUG)
    logging.getLogger("aiohttp").setLevel(logging.DEBUG)
    try:
        yield _LOG_HANDLER
    finally:
        root.removeHandler(_LOG_HANDLER)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(_session_log_handler: SessionLogHandler) -> Iterator[None]:
    _session_log_handler.begin()
    yield
    assert_clean(_session_log_handler.text(), "the log lines of this test")
