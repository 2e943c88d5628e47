"""A/B of the 1 GiB upload and download: two servers from two source trees, taking turns round by round
with `cp` (+ sync) of the same file, so a noisy shared machine moves all of them alike.

    .venv/bin/python bench/hub_ab.py OTHER_TREE [--size-mib 1024] [--rounds 5]

OTHER_TREE is a checkout of another revision (e.g. `git worktree add /tmp/base main`, or a `git archive`
unpacked with this venv); its `run.py serve` is started beside this tree's. Figures only, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.http_api import SERVER_START_SECS, free_port  # noqa: E402
from bench.hub import MiB, account, drop_from_page_cache, timed, write_big_safetensors  # noqa: E402


def start(tree: Path, env: dict[str, str], port: int) -> subprocess.Popen:
    log = Path(tempfile.mkstemp(prefix="va-bench-", suffix=".log")[1])
    process = guard.track(subprocess.Popen(
        [sys.executable, "run.py", "--log-level", "warning", "serve", "--port", str(port)], cwd=tree,
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log.open("w")))
    deadline = time.time() + SERVER_START_SECS
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{tree}: the server did not start: {log.read_text()[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=3600)


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="va-bench-hub-", dir=ROOT))
    servers = []
    try:
        source = work / "big.safetensors"
        sha = write_big_safetensors(source, args.size_mib * MiB)
        total = source.stat().st_size
        trees = {"other": args.other.resolve(), "this": ROOT}
        targets = {}
        for name, tree in trees.items():
            port = free_port()
            env = {"VA_DATA_DIR": str(work / f"data-{name}"), "VA_INFERENCE_ENABLED": "false",
                   "VA_HUB_MAX_FILE_BYTES": str(64 * 1024 * MiB)}
            servers.append(start(tree, env, port))
            base = f"http://127.0.0.1:{port}"
            targets[name] = (base, account(base)[0], servers[-1].pid)
        figures: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            drop_from_page_cache(source)
            cp = timed(["cp", str(source), str(work / "copy")])
            sync = timed(["sync", "-f", str(work / "copy")])
            (work / "copy").unlink()
            figures.setdefault("cp", []).append(cp)
            figures.setdefault("cp+sync", []).append(cp + sync)
            for name, (base, token, pid) in targets.items():
                headers = {"Authorization": f"Bearer {token}"}
                model = httpx.post(f"{base}/api/hub/models", json={"name": "Big " + uuid.uuid4().hex[:6]},
                                   headers=headers, timeout=30)
                version = model.json()["model"]["versions"][0]["id"]
                drop_from_page_cache(source)
                before, started = cpu_seconds(psutil.Process(pid)), time.perf_counter()
                out = guard.run(["curl", "-sS", "--fail-with-body", "-T", str(source), "-H",
                                 f"Authorization: Bearer {token}",
                                 f"{base}/api/hub/versions/{version}/files/big.safetensors"], capture_output=True)
                figures.setdefault(f"{name} up", []).append(time.perf_counter() - started)
                figures.setdefault(f"{name} up cpu", []).append(cpu_seconds(psutil.Process(pid)) - before)
                file = json.loads(out.stdout)["file"]
                assert file["sha256"] == sha
                target = work / "down"
                before, started = cpu_seconds(psutil.Process(pid)), time.perf_counter()
                guard.run(["curl", "-sS", "--fail", "-o", str(target), f"{base}{file['download_url']}"])
                figures.setdefault(f"{name} down", []).append(time.perf_counter() - started)
                figures.setdefault(f"{name} down cpu", []).append(cpu_seconds(psutil.Process(pid)) - before)
                assert target.stat().st_size == total
                target.unlink()
                # The next round stores the file anew (the blob store keeps one copy per sha256).
                shutil.rmtree(work / f"data-{name}" / "blobs" / sha[:2], ignore_errors=True)
        mbs = lambda secs: total / secs / 1e6  # noqa: E731
        med = {key: statistics.median(values) for key, values in figures.items()}
        print(f"{total / MiB:.0f} MiB, median of {args.rounds} rounds taking turns")
        print(f"  cp {mbs(med['cp']):.0f} MB/s, cp+sync {mbs(med['cp+sync']):.0f} MB/s")
        for name in targets:
            up_ratio = statistics.median(c / u for c, u in zip(figures["cp+sync"], figures[f"{name} up"]))
            down_ratio = statistics.median(c / d for c, d in zip(figures["cp"], figures[f"{name} down"]))
            print(f"  {name:5s} upload {mbs(med[name + ' up']):5.0f} MB/s = {up_ratio:.2f}x cp+sync "
                  f"(per-round median), "
                  f"server CPU {med[name + ' up cpu']:.2f} s | download {mbs(med[name + ' down']):5.0f} MB/s = "
                  f"{down_ratio:.2f}x cp, server CPU {med[name + ' down cpu']:.2f} s")
    finally:
        for server in servers:
            guard.stop(server)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
