"""Benchmark: the model hub on MariaDB + Redis.

1. Upload (streaming PUT, `curl -T`) and download (`curl -o`) of one large .safetensors file over
   loopback, in MB/s, against `cp` of the same file on the same disk, with the server's peak RSS
   during each (sampled every 20 ms with psutil).
2. Model list and search at 64 concurrent keep-alive clients over 10,000 seeded models, p50/p99,
   with the cache on (`hub_cache_ttl_secs=60`) and off (`0`). The clients rotate over a mix of
   queries (list by each sort, text searches, kind/base filters), so the cache is not one key.

Starts the real server (`run.py serve`) in a subprocess. Not a test: figures only. Fails with a message
and a non-zero exit (2 past --deadline-secs) rather than waiting forever.

    .venv/bin/python bench/hub.py [--size-mib 1024] [--models 10000] [--seconds 10] [--connections 64] [--skip-transfer] [--skip-find] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psutil
from sqlalchemy import create_engine, insert

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import guard  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.http_api import free_port, start_server  # noqa: E402
from bench.loadgen import run_load  # noqa: E402
from server.store.hub_tables import HubModel  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
WORDS = ("ink wash portrait anime photo real cinematic pixel art watercolour oil sketch neon city forest "
         "dragon castle robot cat dog flower sunset ocean mountain space galaxy steampunk cyberpunk gothic "
         "pastel vintage film noir comic manga chibi clay lowpoly isometric").split()
KINDS = ("checkpoint", "lora", "controlnet", "vae", "embedding")
BASES = ("sd1", "sd2", "sdxl")


class PeakRss:
    """Samples a process's resident memory in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int, every_secs: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._every = every_secs
        self._stop = threading.Event()
        self.peak = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._every)

    def __enter__(self) -> "PeakRss":
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def write_big_safetensors(path: Path, size_bytes: int) -> str:
    """A valid file: one U8 tensor filling `size_bytes` of random bytes. Returns its sha256."""
    header = json.dumps({"model.diffusion_model.blob": {"dtype": "U8", "shape": [size_bytes],
                                                       "data_offsets": [0, size_bytes]}}).encode()
    digest = hashlib.sha256()
    chunk = os.urandom(8 * MiB)
    with open(path, "wb") as f:
        for part in (struct.pack("<Q", len(header)), header):
            f.write(part)
            digest.update(part)
        left = size_bytes
        while left:
            piece = chunk[: min(left, len(chunk))]
            f.write(piece)
            digest.update(piece)
            left -= len(piece)
        f.flush()
        os.fsync(f.fileno())
    return digest.hexdigest()


def drop_from_page_cache(path: Path) -> None:
    # So every read measures the disk the same way (best effort: needs nothing special on Linux).
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children (cp, curl): the client's own cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cpu: list[float] | None = None) -> float:
    cpu_before = children_cpu()
    started = time.perf_counter()
    guard.run(cmd, stdout=subprocess.DEVNULL)
    if cpu is not None:
        cpu.append(children_cpu() - cpu_before)
    return time.perf_counter() - started


def account(base: str) -> tuple[str, int]:
    with httpx.Client(base_url=base, timeout=30) as client:
        client.get("/api/me")
        xsrf = {"X-XSRFToken": client.cookies["_xsrf"]}
        name = "bench" + uuid.uuid4().hex[:8]
        user = client.post("/api/auth/register", json={"username": name, "password": "benchmark password"},
                           headers=xsrf)
        user.raise_for_status()
        token = client.post("/api/tokens", json={"name": "bench"}, headers=xsrf)
        token.raise_for_status()
        return token.json()["token"], user.json()["user"]["id"]


def transfer(port: int, token: str, work: Path, size_mib: int, pid: int, rounds: int) -> None:
    base = f"http://127.0.0.1:{port}"
    source = work / "big.safetensors"
    size = size_mib * MiB
    print(f"writing a {size_mib} MiB .safetensors file…", flush=True)
    sha = write_big_safetensors(source, size)
    total = source.stat().st_size
    headers = {"Authorization": f"Bearer {token}"}
    idle_rss = psutil.Process(pid).memory_info().rss
    figures: dict[str, list[float]] = {"cp": [], "sync": [], "up": [], "down": [], "up_rss": [], "down_rss": [],
                                       "up_cpu": [], "down_cpu": [], "down_null": [], "cp_client": [],
                                       "down_client": [], "null_client": []}
    server = psutil.Process(pid)
    for _ in range(rounds):  # cp, upload and download take turns, so each round sees the same machine
        drop_from_page_cache(source)
        figures["cp"].append(timed(["cp", str(source), str(work / "copy.safetensors")], figures["cp_client"]))
        figures["sync"].append(timed(["sync", "-f", str(work / "copy.safetensors")]))
        (work / "copy.safetensors").unlink()

        model = httpx.post(f"{base}/api/hub/models", json={"name": "Big " + uuid.uuid4().hex[:6]}, headers=headers,
                           timeout=30)
        model.raise_for_status()
        version = model.json()["model"]["versions"][0]["id"]
        drop_from_page_cache(source)
        with PeakRss(pid) as up_rss:
            cpu_before = cpu_seconds(server)
            started = time.perf_counter()
            out = guard.run(["curl", "-sS", "--fail-with-body", "--max-time", str(guard.SUBPROCESS_TIMEOUT_SECS),
                             "-T", str(source), "-H", f"Authorization: Bearer {token}",
                             f"{base}/api/hub/versions/{version}/files/big.safetensors"], capture_output=True)
            figures["up"].append(time.perf_counter() - started)
            figures["up_cpu"].append(cpu_seconds(server) - cpu_before)
        figures["up_rss"].append(up_rss.peak)
        file = json.loads(out.stdout)["file"]
        assert file["sha256"] == sha, "the server stored other bytes"

        target = work / "downloaded.safetensors"
        download = ["curl", "-sS", "--fail", "--max-time", str(guard.SUBPROCESS_TIMEOUT_SECS),
                    f"{base}{file['download_url']}", "-o"]
        with PeakRss(pid) as down_rss:
            cpu_before = cpu_seconds(server)
            figures["down"].append(timed(download + [str(target)], figures["down_client"]))
            figures["down_cpu"].append(cpu_seconds(server) - cpu_before)
        figures["down_rss"].append(down_rss.peak)
        assert target.stat().st_size == total
        target.unlink()
        # What the server delivers when the client keeps nothing: the client's own disk write left out.
        figures["down_null"].append(timed(download + ["/dev/null"], figures["null_client"]))

    med = {key: statistics.median(values) for key, values in figures.items()}
    cp_secs, sync_secs, up_secs, down_secs = med["cp"], med["sync"], med["up"], med["down"]
    mbs = lambda secs: total / secs / 1e6  # noqa: E731
    each = lambda key: ", ".join(f"{mbs(v):.0f}" for v in figures[key])  # noqa: E731
    print(f"\nTransfer of {total / MiB:.0f} MiB over loopback (same disk), median of {rounds} rounds:")
    print(f"  cp                      {cp_secs:6.2f} s  {mbs(cp_secs):7.0f} MB/s   (+ sync {sync_secs:.2f} s: "
          f"{mbs(cp_secs + sync_secs):.0f} MB/s)   rounds {each('cp')}")
    print(f"  upload  PUT (curl -T)   {up_secs:6.2f} s  {mbs(up_secs):7.0f} MB/s   "
          f"ratio to cp {cp_secs / up_secs:.2f}, to cp+sync {(cp_secs + sync_secs) / up_secs:.2f}   "
          f"peak server RSS {med['up_rss'] / MiB:.0f} MiB   rounds {each('up')}")
    print(f"  download GET (curl -o)  {down_secs:6.2f} s  {mbs(down_secs):7.0f} MB/s   "
          f"ratio to cp {cp_secs / down_secs:.2f}                   peak server RSS {med['down_rss'] / MiB:.0f} MiB"
          f"   rounds {each('down')}")
    print(f"  download to /dev/null   {med['down_null']:6.2f} s  {mbs(med['down_null']):7.0f} MB/s   "
          f"ratio to cp {cp_secs / med['down_null']:.2f}   rounds {each('down_null')}")
    print(f"  the client's own CPU: cp {med['cp_client']:.2f} s; curl -o file {med['down_client']:.2f} s, "
          f"curl -o /dev/null {med['null_client']:.2f} s (2 cores: the client's work shares them with the server's)")
    print(f"  server CPU (all its threads): upload {med['up_cpu']:.2f} s, download {med['down_cpu']:.2f} s per "
          f"{total / MiB:.0f} MiB; per-round ratios to cp+sync (upload) "
          f"{', '.join(f'{(c + y) / u:.2f}' for c, y, u in zip(figures['cp'], figures['sync'], figures['up']))}, "
          f"to cp (download) {', '.join(f'{c / d:.2f}' for c, d in zip(figures['cp'], figures['down']))}")
    print(f"  server RSS before the upload {idle_rss / MiB:.0f} MiB (mostly torch/diffusers imports)")
    print("  (upload includes sha256 on the way, the safetensors check, fsync and the move into the blob store)")


def seed_models(database: str, owner_id: int, count: int) -> None:
    """Rows through the table's own definition, so a column added since (hidden, ...) gets its default."""
    rng = random.Random(7)
    rows = []
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    for i in range(count):
        words = rng.sample(WORDS, 3)
        created = now - dt.timedelta(seconds=count - i)
        rows.append({"owner_id": owner_id, "slug": f"m{i}-{'-'.join(words)}",
                     "name": " ".join(w.title() for w in words) + f" {i}", "kind": rng.choice(KINDS),
                     "base": rng.choice(BASES), "description": f"A {words[0]} model for {words[1]} pictures. " * 4,
                     "tags": " ".join(rng.sample(WORDS, 3)), "downloads": rng.randint(0, 50_000),
                     "likes": rng.randint(0, 5_000), "created_at": created, "updated_at": created})
    engine = create_engine(f"mysql+pymysql://root@127.0.0.1:3306/{database}?charset=utf8mb4",
                           connect_args={"connect_timeout": guard.CONNECT_TIMEOUT_SECS,
                                         "read_timeout": guard.QUERY_TIMEOUT_SECS})
    try:
        # One transaction; on any failure it is rolled back and the connection closed, so no session keeps
        # a metadata lock that would make the DROP DATABASE at the end wait.
        with engine.begin() as conn:
            conn.execute(insert(HubModel.__table__), rows)
    finally:
        engine.dispose()


def query_mix() -> list[str]:
    paths = [f"/api/hub/models?sort={sort}" for sort in ("newest", "downloads", "likes")]
    paths += [f"/api/hub/models?kind={kind}" for kind in KINDS]
    paths += [f"/api/hub/models?base={base}&sort=downloads" for base in BASES]
    paths += [f"/api/hub/models?q={word}" for word in WORDS[:24]]
    return paths


def find_models(port: int, connections: int, seconds: float, label: str) -> None:
    paths = query_mix()
    # A warm-up, which with the cache on also fills it.
    asyncio.run(run_load("127.0.0.1", port, paths, {}, connections=connections, seconds=2.0))
    lists = asyncio.run(run_load("127.0.0.1", port, [p for p in paths if "q=" not in p], {},
                                 connections=connections, seconds=seconds))
    searches = asyncio.run(run_load("127.0.0.1", port, [p for p in paths if "q=" in p], {},
                                    connections=connections, seconds=seconds))
    if not lists.requests or not searches.requests:
        raise RuntimeError(f"{label}: no request succeeded ({lists.errors + searches.errors} errors)")
    print(f"  {label:9s} list   {lists.summary()}")
    print(f"  {label:9s} search {searches.summary()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--skip-transfer", action="store_true", help="only the list/search part")
    parser.add_argument("--skip-find", action="store_true", help="only the upload/download part")
    parser.add_argument("--rounds", type=int, default=3, help="upload/download rounds; the median is printed")
    parser.add_argument("--deadline-secs", type=float, default=3600, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    with guard.scratch_database() as database:
        work = Path(tempfile.mkdtemp(prefix="va-bench-hub-", dir=ROOT))  # the same disk as the data dir
        try:
            measure(args, database, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def measure(args: argparse.Namespace, database: str, work: Path) -> None:
    env = {
        "VA_DATA_DIR": str(work / "data"),
        "VA_DATABASE_URL": f"mysql+aiomysql://root@127.0.0.1:3306/{database}",
        "VA_REDIS_URL": "redis://127.0.0.1:6379/0",
        "VA_REDIS_PREFIX": f"va:bench:{database}:",
        "VA_INFERENCE_ENABLED": "false",
        "VA_HUB_MAX_FILE_BYTES": str(64 * 1024 * MiB),
    }
    guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT, env={**os.environ, **env})
    port = free_port()
    server = start_server({**env, "VA_HUB_CACHE_TTL_SECS": "60"}, port)
    try:
        token, user_id = account(f"http://127.0.0.1:{port}")
        if not args.skip_transfer:
            transfer(port, token, work, args.size_mib, server.pid, args.rounds)
        if args.skip_find:
            return
        print(f"\nseeding {args.models:,} models…", flush=True)
        seed_models(database, user_id, args.models)
        print(f"Model list / search, {args.connections} clients, {args.seconds:.0f} s each, MariaDB + Redis:")
        find_models(port, args.connections, args.seconds, "cache on")
    finally:
        guard.stop(server)
    port = free_port()
    server = start_server({**env, "VA_HUB_CACHE_TTL_SECS": "0"}, port)
    try:
        find_models(port, args.connections, args.seconds, "cache off")
    finally:
        guard.stop(server)


if __name__ == "__main__":
    main()
