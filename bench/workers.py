"""Jobs across processes: dispatch latency, throughput with 1 and 2 workers, failover, web RSS.

Starts real processes (tests/support/processes.py): the embedded default (`run.py serve`
with its in-process queue and worker, SQLite) and the scaled-out roles (`run.py serve`
web-only + `run.py worker` ×1 or ×2 over MariaDB + Redis Streams), all on the tiny
demo model, and prints:

- dispatch latency, job stored (row created) -> a worker starts it (row started), p50/p99,
  Redis Streams vs the in-process queue, in the same run;
- throughput (jobs/s) of a burst with 1 and 2 CPU workers, and the ratio;
- failover: kill -9 of the worker running a job -> the job running again on the other,
  against the heartbeat interval;
- resident memory of a web process that served all of the above without the engine.

Figures only, never pass/fail; every wait is bounded and a failure exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import guard  # noqa: E402
from inference.demo_model import DEMO_MODEL_NAME, build_demo_model  # noqa: E402
from tests.support.client import ApiClient  # noqa: E402
from tests.support.processes import Cluster, Process  # noqa: E402
from tests.support.ws import WsClient  # noqa: E402

SMALL = {"model": DEMO_MODEL_NAME, "prompt": "a lighthouse at dusk", "width": 64, "height": 64, "sampler": "Euler"}
COOKIE_SECRET = "bench-cookie-secret-" + "x" * 40
WAIT_SECS = 180.0


def parse_time(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def wait_done(client: ApiClient, job_id: str) -> dict:
    deadline = time.monotonic() + WAIT_SECS
    while True:
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        if job["status"] in ("done", "failed", "cancelled"):
            if job["status"] != "done":
                raise SystemExit(f"job {job_id} ended {job['status']}: {job['error']}")
            return job
        if time.monotonic() > deadline:
            raise SystemExit(f"job {job_id} still {job['status']} after {WAIT_SECS} s")
        await asyncio.sleep(0.02)


async def signed_in(base_url: str, name: str) -> ApiClient:
    client = ApiClient(base_url)
    await client.register(name)
    return client


async def dispatch_latency(base_url: str, jobs: int) -> list[float]:
    """One job at a time, so each finds an idle worker: row created -> row started, in ms."""
    client = await signed_in(base_url, "lat" + uuid.uuid4().hex[:6])
    try:
        await wait_done(client, (await client.post("/api/jobs", {**SMALL, "steps": 1})).json()["job"]["id"])  # warm
        latencies = []
        for _ in range(jobs):
            job = await wait_done(client, (await client.post("/api/jobs", {**SMALL, "steps": 1})).json()["job"]["id"])
            latencies.append((parse_time(job["started_at"]) - parse_time(job["created_at"])) * 1000)
        return latencies
    finally:
        await client.aclose()


async def burst(base_url: str, users: int, per_user: int, steps: int) -> float:
    """jobs/s for users × per_user jobs submitted at once, until the last is done."""
    clients = [await signed_in(base_url, "burst" + uuid.uuid4().hex[:6]) for _ in range(users)]
    try:
        started = time.perf_counter()
        ids = [(client, (await client.post("/api/jobs", {**SMALL, "steps": steps})).json()["job"]["id"])
               for client in clients for _ in range(per_user)]
        for client, job_id in ids:
            await wait_done(client, job_id)
        return len(ids) / (time.perf_counter() - started)
    finally:
        for client in clients:
            await client.aclose()


def worker_pid(worker_id: str) -> int:
    return int(re.match(r".*-(\d+)-[0-9a-f]{4}$", worker_id).group(1))


async def failover(cluster: Cluster, base_url: str, workers: list[Process], database: str, rounds: int
                   ) -> list[float]:
    """kill -9 the worker running a job; seconds until the job runs again (gen.restarted) elsewhere."""
    client = await signed_in(base_url, "fail" + uuid.uuid4().hex[:6])
    ws = await WsClient.connect(base_url, api=client)
    times = []
    try:
        for _ in range(rounds):
            job_id = (await client.post("/api/jobs", {**SMALL, "steps": 100})).json()["job"]["id"]
            await ws.request("sub", topic=f"job:{job_id}", since=0)
            await ws.wait_for(lambda e: e.get("job") == job_id and e["type"] == "gen.progress", WAIT_SECS)
            pid = worker_pid(job_row(database, job_id)["worker_id"])
            victim = next(worker for worker in workers if worker.pid == pid)
            os.kill(pid, signal.SIGKILL)
            killed = time.perf_counter()
            await ws.wait_for(lambda e: e.get("job") == job_id and e["type"] == "gen.restarted", 30)
            times.append(time.perf_counter() - killed)
            await ws.wait_for(lambda e: e.get("job") == job_id and e["type"] == "gen.done", WAIT_SECS)
            workers.remove(victim)
            workers.append(await cluster.worker())
        return times
    finally:
        ws.close()
        await client.aclose()


def job_row(database: str, job_id: str) -> dict:
    conn = pymysql.connect(host="127.0.0.1", user="root", password="", database=database,
                           cursorclass=pymysql.cursors.DictCursor, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
            return cur.fetchone()
    finally:
        conn.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(name: str, values: list[float]) -> str:
    return f"{name}: p50 {statistics.median(values):.1f} ms, p99 {percentile(values, 0.99):.1f} ms (n={len(values)})"


async def main_async(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as root:
        root_path = Path(root)
        models = root_path / "models"
        build_demo_model(models / DEMO_MODEL_NAME)
        logs = root_path / "logs"
        logs.mkdir()

        def data_dir(name: str) -> Path:
            data = root_path / name
            data.mkdir()
            (data / "models").symlink_to(models, target_is_directory=True)
            return data

        common = {"VA_COOKIE_SECRET": COOKIE_SECRET, "VA_PREVIEW_FPS": "0", "VA_REGISTER_LIMIT": "100000",
                  "VA_WORKER_HEARTBEAT_SECS": str(args.heartbeat), "VA_WORKER_CLAIM_SECS": str(args.heartbeat * 1.5),
                  "VA_QUEUE_MAX_GLOBAL": "200", "VA_QUEUE_MAX_PER_USER": "100"}

        embedded = Cluster(data_dir("embedded"), common, logs)
        try:
            web = await embedded.web(with_worker=True)
            in_process = await dispatch_latency(web.base_url, args.jobs)
        finally:
            embedded.stop_all()

        with guard.scratch_database() as database:
            await services_figures(args, data_dir("services"), common, logs, database, in_process)


async def services_figures(args: argparse.Namespace, data: Path, common: dict[str, str], logs: Path,
                           database: str, in_process: list[float]) -> None:
    cluster = Cluster(data, {
        **common, "VA_DATABASE_URL": f"mysql+aiomysql://root@127.0.0.1:3306/{database}",
        "VA_REDIS_URL": "redis://127.0.0.1:6379/0", "VA_REDIS_PREFIX": f"va:bench:{database}:"}, logs)
    try:
        cluster.migrate()
        web = await cluster.web()
        workers = [await cluster.worker()]
        streams = await dispatch_latency(web.base_url, args.jobs)
        print(f"Dispatch latency, job stored -> worker starts it ({args.jobs} jobs, one at a time, tiny model):")
        print("  " + summary("in-process queue (embedded)", in_process))
        print("  " + summary("Redis Streams (web + worker processes)", streams))

        one = [await burst(web.base_url, args.users, args.per_user, args.steps) for _ in range(args.rounds)]
        workers.append(await cluster.worker())
        two = [await burst(web.base_url, args.users, args.per_user, args.steps) for _ in range(args.rounds)]
        print(f"Throughput, {args.users} users × {args.per_user} jobs of {args.steps} steps at 64², "
              f"median of {args.rounds}:")
        print(f"  1 worker: {statistics.median(one):.2f} jobs/s  (rounds {', '.join(f'{v:.2f}' for v in one)})")
        print(f"  2 workers: {statistics.median(two):.2f} jobs/s  (rounds {', '.join(f'{v:.2f}' for v in two)})")
        print(f"  ratio 2/1: {statistics.median(two) / statistics.median(one):.2f}x")

        times = await failover(cluster, web.base_url, workers, database, args.failovers)
        print(f"Failover, kill -9 -> running again on the other worker (heartbeat {args.heartbeat:g} s, "
              f"claim after {args.heartbeat * 1.5:g} s): median {statistics.median(times):.2f} s, "
              f"max {max(times):.2f} s = {max(times) / args.heartbeat:.2f} × heartbeat "
              f"(rounds {', '.join(f'{t:.2f}' for t in times)})")
        maps = Path(f"/proc/{web.pid}/maps").read_text()
        print(f"Web process after serving all of the above: RSS {rss_mib(web.pid):.0f} MiB, "
              f"torch loaded: {'yes' if 'torch' in maps else 'no'}")
        print(f"  (a worker process for comparison: RSS {rss_mib(workers[0].pid):.0f} MiB)")
    finally:
        cluster.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50, help="jobs for the dispatch latency")
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--per-user", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--heartbeat", type=float, default=1.0, help="worker heartbeat interval, seconds")
    parser.add_argument("--deadline-secs", type=float, default=1800, help="give up (exit 2) past this")
    args = parser.parse_args()
    guard.main(lambda: asyncio.run(main_async(args)), deadline_secs=args.deadline_secs)


if __name__ == "__main__":
    main()
