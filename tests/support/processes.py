"""A web process of its own for tests that kill one: the real app in a child Python, ended by its PID."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECS = 90  # importing the app takes seconds; on a loaded machine, more

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
    process = subprocess.Popen([sys.executable, "-c", SERVE], cwd=REPO_ROOT, env={**os.environ, **env},
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
