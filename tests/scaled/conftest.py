"""Scaled out for real: `run.py serve` web processes and `run.py worker` processes over MariaDB + Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pymysql
import pytest

from tests.support.backends import (MARIADB_HOST, MARIADB_PORT, MARIADB_USER, TEST_COOKIE_SECRET, mariadb_database,
                                    redis_prefix, require_services)
from tests.support import redis_server
from tests.support.processes import Cluster
from tests.support.redis_server import RedisServer

# Short leases so takeovers happen in test time: renewed every 0.25 s, taken over after 1 s of silence.
HEARTBEAT_SECS = "0.5"
CLAIM_SECS = "1.0"


def cluster_env(database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    return {"VA_DATABASE_URL": database_url, "VA_REDIS_URL": redis_url, "VA_REDIS_PREFIX": prefix,
            "VA_COOKIE_SECRET": TEST_COOKIE_SECRET, "VA_PREVIEW_FPS": "0", "VA_IO_THREADS": "2",
            "VA_CPU_THREADS": "2", "VA_WORKER_HEARTBEAT_SECS": HEARTBEAT_SECS, "VA_WORKER_CLAIM_SECS": CLAIM_SECS,
            "VA_WORKER_STOP_GRACE_SECS": "30", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


@pytest.fixture
def shared_data(tmp_path: Path, demo_models_dir: Path) -> Path:
    """A data directory every process shares (blobs, models), as the shared volume is in a cluster."""
    data = tmp_path / "data"
    (data / "models").mkdir(parents=True)
    for entry in demo_models_dir.iterdir():
        (data / "models" / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    return data


@pytest.fixture
def database_url() -> Iterator[str]:
    require_services()
    with mariadb_database() as url:
        yield url


@pytest.fixture
def cluster(shared_data: Path, database_url: str, tmp_path: Path) -> Iterator[Cluster]:
    with redis_prefix() as prefix:
        logs = tmp_path / "logs"
        logs.mkdir()
        cluster = Cluster(shared_data, cluster_env(database_url, "redis://127.0.0.1:6379/0", prefix), logs)
        cluster.migrate()
        try:
            yield cluster
        finally:
            cluster.stop_all()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (another port, its own dir), which the test may restart."""
    with redis_server.own_redis(tmp_path / "redis") as server:
        yield server


def job_rows(database_url: str) -> dict[str, dict]:
    """The jobs table as the database has it (the truth), for assertions."""
    name = database_url.rsplit("/", 1)[1].split("?")[0]
    conn = pymysql.connect(host=MARIADB_HOST, port=MARIADB_PORT, user=MARIADB_USER, password="", database=name,
                           cursorclass=pymysql.cursors.DictCursor, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT j.*, (SELECT COUNT(*) FROM images i WHERE i.job_id = j.id) AS image_count "
                        "FROM jobs j")
            return {row["id"]: row for row in cur.fetchall()}
    finally:
        conn.close()
