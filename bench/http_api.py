"""Benchmark: GET /api/me with a bearer token at 64 concurrent connections, embedded and services mode.

Starts the real server (`run.py serve`) in a subprocess for each mode, creates a user
and a token, then drives load from this process. Prints requests/s and p50/p99, and in
the same run the same load on a bare Tornado JSON handler (bench/http_reference_server.py),
our figures as a ratio of it. Not a test: figures only.

    .venv/bin/python bench/http_api.py [--seconds 10] [--connections 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import guard  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.loadgen import LoadResult, run_load  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# Importing torch and diffusers takes a while; a server not answering /healthz after this never will.
SERVER_START_SECS = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], port: int, log_path: Path | None = None) -> subprocess.Popen:
    """`run.py serve` in a subprocess, its log in a file (an unread stderr pipe would fill and stall it)."""
    log_path = log_path or Path(tempfile.mkstemp(prefix="va-bench-", suffix=".log")[1])
    process = guard.track(subprocess.Popen(
        [sys.executable, "run.py", "--log-level", "warning", "serve", "--port", str(port)],
        cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log_path.open("w"),
    ))
    deadline = time.time() + SERVER_START_SECS
    while time.time() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    guard.stop(process)
    raise RuntimeError(f"the server did not start within {SERVER_START_SECS} s (exit code {process.returncode}); "
                       f"its log ends: {log_path.read_text()[-2000:]}")


def make_token(base: str) -> str:
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/api/me")
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        name = "bench" + uuid.uuid4().hex[:8]
        client.post("/api/auth/register", json={"username": name, "password": "benchmark password"},
                    headers=xsrf).raise_for_status()
        created = client.post("/api/tokens", json={"name": "bench"}, headers=xsrf)
        created.raise_for_status()
        return created.json()["token"]


def start_reference(port: int) -> subprocess.Popen:
    server = guard.track(subprocess.Popen([sys.executable, str(ROOT / "bench" / "http_reference_server.py"),
                                           str(port)], cwd=ROOT))
    deadline = time.time() + SERVER_START_SECS
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.2)
    guard.stop(server)
    raise RuntimeError("the reference server did not start")


def report(name: str, results: list[LoadResult], rounds: int, reference: float | None) -> float:
    results = sorted(results, key=lambda r: r.rps)
    middle = results[len(results) // 2]
    ratio = f"  = {middle.rps / reference:.2f}x bare Tornado" if reference else ""
    print(f"{name:9s} median of {rounds}: {middle.summary()}{ratio}")
    print(f"          rounds: {', '.join(f'{r.rps:.0f}' for r in results)} req/s; "
          f"p99 {', '.join(f'{r.percentile(0.99) * 1000:.1f}' for r in results)} ms")
    return middle.rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=["embedded", "services"], default=["embedded", "services"])
    parser.add_argument("--deadline-secs", type=float, default=1800, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    print(f"GET /api/me, bearer token, {args.connections} connections, {args.seconds:.0f} s per round; "
          f"the servers take turns, round by round")
    with guard.scratch_database() as database, tempfile.TemporaryDirectory() as embedded_data, \
            tempfile.TemporaryDirectory() as services_data:
        modes = {
            "embedded": {"VA_DATA_DIR": embedded_data},
            "services": {
                "VA_DATA_DIR": services_data,
                "VA_DATABASE_URL": f"mysql+aiomysql://root@127.0.0.1:3306/{database}",
                "VA_REDIS_URL": "redis://127.0.0.1:6379/0",
                "VA_REDIS_PREFIX": f"va:bench:{database}:",
            },
        }
        servers = []
        try:
            port = free_port()
            servers.append(start_reference(port))
            targets = {"tornado": (port, "none")}
            pids = {"tornado": servers[-1].pid}
            for name in args.modes:
                env = modes[name]
                if env.get("VA_DATABASE_URL"):
                    guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT,
                              env={**os.environ, **env})
                port = free_port()
                servers.append(start_server(env, port))
                pids[name] = servers[-1].pid
                targets[name] = (port, make_token(f"http://127.0.0.1:{port}"))
            results: dict[str, list[LoadResult]] = {name: [] for name in targets}
            cpu_per_request: dict[str, list[float]] = {name: [] for name in targets}

            async def load(port: int, token: str, seconds: float) -> LoadResult:
                return await run_load("127.0.0.1", port, "/api/me", {"Authorization": f"Bearer {token}"},
                                      connections=args.connections, seconds=seconds)

            for port, token in targets.values():
                asyncio.run(load(port, token, 1.0))  # warm-up
            for _ in range(args.rounds):
                for name, (port, token) in targets.items():
                    server = psutil.Process(pids[name])
                    before = cpu_seconds(server)
                    result = asyncio.run(load(port, token, args.seconds))
                    spent = cpu_seconds(server) - before
                    results[name].append(result)
                    cpu_per_request[name].append(spent / max(1, result.requests + result.errors) * 1e6)
        finally:
            for server in servers:
                guard.stop(server)
    reference = report("tornado", results.pop("tornado"), args.rounds, None)
    for name, runs in results.items():
        report(name, runs, args.rounds, reference)
    # The server's own CPU per request (psutil, its process alone): on a shared 2-core machine the load
    # generator in this process and the neighbours move req/s; what the server code costs moves less.
    reference_cpu = statistics.median(cpu_per_request.pop("tornado"))
    print(f"server CPU per request (median of {args.rounds}): bare Tornado {reference_cpu:.0f} us", end="")
    for name, values in cpu_per_request.items():
        print(f"; {name} {statistics.median(values):.0f} us (= {reference_cpu / statistics.median(values):.2f}x "
              f"the bare handler's rate per CPU)", end="")
    print()


if __name__ == "__main__":
    main()
