"""A PUT upload whose process died mid-body leaves a temporary file nobody can resume: the next process
to start sweeps it, without touching a PUT another live process is still receiving."""

import asyncio
import os
import signal
from pathlib import Path

from tests.support.backends import TEST_COOKIE_SECRET
from tests.support.client import ApiClient
from tests.support.processes import server_process
from tests.support.safetensors_files import tiny_lora
from tests.support.server import running_server
from tests.conftest import make_settings

HALF_BYTES = 8 * 1024 * 1024


async def start_put(base_url: str, token: str, version_id: int, name: str, length: int, first: bytes):
    """A PUT that sends its headers and the first part of its body, then waits."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"PUT /api/hub/versions/{version_id}/files/{name} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                  f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n").encode() + first)
    await writer.drain()
    return reader, writer


async def wait_for(condition, timeout_secs: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_secs
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


def put_files(temp_dir: Path) -> set[str]:
    return {p.name for p in temp_dir.glob("put-*")}


async def test_a_dead_process_put_is_swept_at_start_up_and_a_live_one_is_not(embedded_backend, tmp_path):
    data = tmp_path / "data"
    env = {"VA_DATA_DIR": str(data), "VA_COOKIE_SECRET": TEST_COOKIE_SECRET, "VA_INFERENCE_ENABLED": "false",
           "VA_IO_THREADS": "2", "VA_CPU_THREADS": "2"}
    settings = make_settings(embedded_backend, data, inference_enabled=False)
    async with running_server(settings) as (base, runtime):  # migrates the shared SQLite database first
        temp_dir = runtime.blobs.temp_dir
        alice = ApiClient(base)
        await alice.register("alice")
        token = (await alice.post("/api/tokens", {"name": "uploads"})).json()["token"]
        model = (await alice.post("/api/hub/models", {"name": "Tiny"})).json()["model"]
        version_id = model["versions"][0]["id"]
        await alice.aclose()

        async with server_process(env) as (doomed, doomed_process), server_process(env) as (alive, _):
            # Process 1 receives half of a 16 MiB PUT, then dies (SIGKILL: no clean-up of its own).
            _, dead_writer = await start_put(doomed, token, version_id, "big.safetensors", 2 * HALF_BYTES,
                                             bytes(HALF_BYTES))
            await wait_for(lambda: any((temp_dir / n).stat().st_size > 0 for n in put_files(temp_dir)))
            (leftover,) = put_files(temp_dir)
            os.kill(doomed_process.pid, signal.SIGKILL)
            await asyncio.to_thread(doomed_process.wait)
            dead_writer.close()

            # Process 2 is receiving a PUT right now.
            lora = tiny_lora()
            reader, writer = await start_put(alive, token, version_id, "lora.safetensors", len(lora),
                                             lora[:len(lora) // 2])
            await wait_for(lambda: len(put_files(temp_dir)) == 2)
            live = (put_files(temp_dir) - {leftover}).pop()

            # A process starting now sweeps the dead one's file and leaves the live one alone.
            async with running_server(settings):
                await wait_for(lambda: leftover not in put_files(temp_dir), 10)
                assert live in put_files(temp_dir)
            writer.write(lora[len(lora) // 2:])
            await writer.drain()
            status = await asyncio.wait_for(reader.readline(), 20)
            assert status.startswith(b"HTTP/1.1 201"), status
            writer.close()
        assert put_files(temp_dir) == set()
