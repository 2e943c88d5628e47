"""A redis-server of a test's own, on a free port with its own directory, to stop and start again.

Nothing on disk (`--save "" --appendonly no`), as the project's Redis: a restart loses every key.
Only the process started here is ever stopped, by its PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import redis

from tests.support.processes import free_port

START_TIMEOUT_SECS = 10.0


class RedisServer:
    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_SECS
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.ConnectionError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise RuntimeError(f"redis-server on port {self.port} did not start") from None
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, *, keep_data: bool = False) -> None:
        """Stop; with ``keep_data`` the keys are saved and come back with the next start (as after a
        network partition, when Redis was only out of reach)."""
        if self._process is not None and self._process.poll() is None:
            if keep_data:
                client = redis.Redis.from_url(self.url)
                try:
                    client.shutdown(save=True)
                except redis.ConnectionError:
                    pass  # the server closes the connection as it exits
                finally:
                    client.close()
            else:
                os.kill(self._process.pid, signal.SIGTERM)
            self._process.wait(timeout=10)
        self._process = None
        if not keep_data:
            (self.directory / "dump.rdb").unlink(missing_ok=True)


@contextmanager
def own_redis(directory: Path) -> Iterator[RedisServer]:
    """A started redis-server, stopped afterwards (skips when redis-server is not installed)."""
    if subprocess.run(["which", "redis-server"], capture_output=True).returncode != 0:
        pytest.skip("redis-server is not installed")
    server = RedisServer(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()
