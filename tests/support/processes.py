"""Real processes for tests that kill or restart one: `run.py serve` and `run.py worker` as a deployment
runs them (`Cluster`), or the test app in a child Python (`server_process`).

Each process is ended by PID, only by whoever started it; `run.py` processes log to a file of their own
(an unread pipe would fill and stall them).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import httpx

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECS = 90.0  # importing the app takes seconds; on a loaded machine, more


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    base_url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """kill -9: no goodbye, no cleanup."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self) -> None:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not exit within {timeout} s:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)
        return self.popen.returncode

    async def wait_log(self, text: str, timeout: float = START_TIMEOUT_SECS) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if not self.alive():
                raise AssertionError(f"{self.name} exited ({self.popen.returncode}):\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} never logged {text!r}:\n{self.log()[-3000:]}")
            await asyncio.sleep(0.05)


@dataclass
class Cluster:
    """Web and worker processes sharing one database, one Redis prefix and one data directory."""

    data_dir: Path
    env: dict[str, str]
    logs: Path
    processes: list[Process] = field(default_factory=list)

    def _start(self, name: str, args: list[str], extra_env: dict[str, str]) -> Process:
        log_path = self.logs / f"{name}-{len(self.processes)}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "VA_DATA_DIR": str(self.data_dir), **self.env, **extra_env}
        popen = subprocess.Popen([sys.executable, "run.py", *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=log_path.open("w"))
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    def cli(self, *args: str) -> None:
        """A one-off `run.py` command (migrate, moderator …) against the cluster's database."""
        subprocess.run([sys.executable, "run.py", "--log-level", "warning", *args], cwd=ROOT, check=True,
                       env={**os.environ, "VA_DATA_DIR": str(self.data_dir), **self.env}, timeout=120)

    def migrate(self) -> None:
        self.cli("migrate")

    async def web(self, *, with_worker: bool = False, **extra_env: str) -> Process:
        """A web process that takes and watches jobs but runs none (or, `with_worker`, the embedded default)."""
        port = free_port()
        process = self._start("web", ["serve", "--port", str(port)],
                              {"VA_INFERENCE_ENABLED": "true" if with_worker else "false", **extra_env})
        process.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_TIMEOUT_SECS
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                try:
                    if (await client.get(process.base_url + "/healthz")).status_code == 200:
                        return process
                except httpx.HTTPError:
                    pass
                if not process.alive() or time.monotonic() > deadline:
                    raise AssertionError(f"web process did not start:\n{process.log()[-3000:]}")
                await asyncio.sleep(0.1)

    async def worker(self, **extra_env: str) -> Process:
        process = self._start("worker", ["worker"], extra_env)
        await process.wait_log("ready")
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            process.terminate()
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()


# Serves on a free port with settings from the VA_* environment and prints its base URL.
SERVE = """
import asyncio
from config import Settings
from tests.support.server import running_server

async def main():
    async with running_server(Settings()) as (base_url, _runtime):
        print(base_url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


@asynccontextmanager
async def server_process(env: dict[str, str]) -> AsyncIterator[tuple[str, subprocess.Popen]]:
    """A child process serving the app (``env``: VA_* settings); yields its base URL and the process."""
    process = subprocess.Popen([sys.executable, "-c", SERVE], cwd=ROOT, env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), START_TIMEOUT_SECS)
        if not line.startswith("http://"):
            raise RuntimeError(f"the server process did not start (exit code {process.poll()})")
        yield line.strip(), process
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.to_thread(process.wait), 10)
            except asyncio.TimeoutError:
                os.kill(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait)
        process.stdout.close()
