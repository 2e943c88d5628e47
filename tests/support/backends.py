"""The two ways to run, for tests: embedded (SQLite + in-process) and services (MariaDB + Redis).

Each test gets its own MariaDB database and its own Redis key prefix, so tests
never see each other's data. ``VA_TEST_REQUIRE_SERVICES=1`` (CI) turns a
missing MariaDB or Redis into a failure instead of a skip.
"""

from __future__ import annotations

import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import pymysql
import pytest
import redis

MARIADB_HOST = os.environ.get("VA_TEST_MARIADB_HOST", "127.0.0.1")
MARIADB_PORT = int(os.environ.get("VA_TEST_MARIADB_PORT", "3306"))
MARIADB_USER = os.environ.get("VA_TEST_MARIADB_USER", "root")
REDIS_URL = os.environ.get("VA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_SERVICES = os.environ.get("VA_TEST_REQUIRE_SERVICES") == "1"
# A fixed secret for tests: long enough to pass validation, never used outside them.
TEST_COOKIE_SECRET = "test-cookie-secret-" + "x" * 40


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_services() -> None:
    """Skip (or, under CI, fail) when MariaDB or Redis does not answer."""
    missing = [name for name, up in (
        ("MariaDB", _answers(MARIADB_HOST, MARIADB_PORT)),
        ("Redis", _answers("127.0.0.1", 6379)),
    ) if not up]
    if missing:
        message = f"{' and '.join(missing)} not answering on localhost"
        if REQUIRE_SERVICES:
            pytest.fail(message + " (VA_TEST_REQUIRE_SERVICES=1)")
        pytest.skip(message)


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password="", autocommit=True)


@contextmanager
def mariadb_database() -> Iterator[str]:
    """A fresh utf8mb4 database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"va_test_{uuid.uuid4().hex[:12]}"
    conn = _admin()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        yield f"mysql+aiomysql://{MARIADB_USER}@{MARIADB_HOST}:{MARIADB_PORT}/{name}?charset=utf8mb4"
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


@contextmanager
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own; every key under it is deleted afterwards."""
    prefix = f"va:test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@dataclass(frozen=True)
class Backend:
    name: str
    database_url: str | None
    redis_url: str | None
    redis_prefix: str

    @property
    def services(self) -> bool:
        return self.name == "services"


@contextmanager
def backend(name: str) -> Iterator[Backend]:
    if name == "embedded":
        yield Backend("embedded", None, None, "va:")
        return
    require_services()
    with mariadb_database() as url, redis_prefix() as prefix:
        yield Backend("services", url, REDIS_URL, prefix)


def kill_mariadb_connections(database: str) -> int:
    """Kill every connection to a database, as a MariaDB restart or wait_timeout would."""
    conn = _admin()
    killed = 0
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id FROM information_schema.processlist WHERE db = %s", (database,))
            for (conn_id,) in cur.fetchall():
                cur.execute(f"KILL {int(conn_id)}")
                killed += 1
    finally:
        conn.close()
    return killed
