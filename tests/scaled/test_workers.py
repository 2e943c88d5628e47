"""GPU workers across processes: web ×2 and worker ×2 over MariaDB + Redis, killed, restarted, stopped."""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path

import httpx
import pytest
import redis.asyncio as redis

from tests.scaled.conftest import cluster_env, job_rows
from tests.support.client import ApiClient, error_code
from tests.support.processes import Cluster, Process, free_port
from tests.support.ws import WsClient

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

MODEL = "demo-tiny"
SMALL = {"model": MODEL, "prompt": "a lighthouse at dusk", "width": 64, "height": 64, "sampler": "Euler"}
FINAL = ("gen.done", "gen.error", "gen.cancelled")


async def signed_in(base_url: str, name: str) -> ApiClient:
    client = ApiClient(base_url)
    await client.register(name)
    return client


async def events_until_final(ws: WsClient, job_id: str, timeout: float = 90) -> list[dict]:
    events = []
    while True:
        event = await ws.wait_for(lambda e: e.get("job") == job_id, timeout)
        events.append(event)
        if event["type"] in FINAL:
            return events


async def job_now(client: ApiClient, job_id: str) -> dict:
    return (await client.get(f"/api/jobs/{job_id}")).json()["job"]


async def wait_status(client: ApiClient, job_id: str, statuses: tuple[str, ...], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = await job_now(client, job_id)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job stayed {job['status']}: {job}"
        await asyncio.sleep(0.05)


def worker_id(process: Process) -> str:
    """The id a worker process announced (its log's "worker <id> ready" line)."""
    return re.search(r"worker (\S+) ready", process.log()).group(1)


def worker_running(workers: list[Process], job: dict) -> Process:
    """The worker process a running job's row names (worker ids carry the PID)."""
    pid = int(re.match(r".*-(\d+)-[0-9a-f]{4}$", job["worker_id"]).group(1))
    return next(worker for worker in workers if worker.pid == pid)


async def test_two_web_and_two_workers_share_the_queue(cluster: Cluster, database_url: str):
    web1, web2 = await cluster.web(), await cluster.web()
    workers = [await cluster.worker(), await cluster.worker()]
    alice = await signed_in(web1.base_url, "alice")
    bob = await signed_in(web2.base_url, "bob")
    watcher_a = await WsClient.connect(web2.base_url, api=await login(web2.base_url, "alice"))
    watcher_b = await WsClient.connect(web1.base_url, api=await login(web1.base_url, "bob"))
    try:
        a_jobs = [(await alice.post("/api/jobs", {**SMALL, "steps": 20})).json()["job"]["id"] for _ in range(3)]
        b_jobs = [(await bob.post("/api/jobs", {**SMALL, "steps": 20})).json()["job"]["id"] for _ in range(3)]
        for ws, jobs in ((watcher_a, a_jobs), (watcher_b, b_jobs)):
            for job_id in jobs:
                await ws.request("sub", topic=f"job:{job_id}", since=0)
                events = await events_until_final(ws, job_id)
                kinds = [e["type"] for e in events]
                assert kinds[-1] == "gen.done", events[-1]
                assert [e["step"] for e in events if e["type"] == "gen.progress"] == list(range(1, 21))
                seqs = [e["seq"] for e in events if "seq" in e]
                assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        rows = job_rows(database_url)
        assert {row["worker_id"] for row in rows.values()} == {worker_id(w) for w in workers}, "both took jobs"
        assert all(row["status"] == "done" and row["image_count"] == 1 for row in rows.values())
        for web in (web1, web2):
            maps = Path(f"/proc/{web.pid}/maps").read_text()
            assert "torch" not in maps, "a web process must not load torch"
        # Moderators see the workers that heartbeat now, from either web process; others are refused.
        assert error_code(await bob.get("/api/workers")) == "forbidden"
        cluster.cli("moderator", "alice")
        announced = (await alice.get("/api/workers")).json()["workers"]
        assert sorted(w["id"] for w in announced) == sorted(worker_id(w) for w in workers)
        assert all(w["running"] == [] and w["heartbeat_age_s"] < 5 and MODEL in w["models"] for w in announced)
    finally:
        for client in (alice, bob):
            await client.aclose()
        watcher_a.close()
        watcher_b.close()


async def login(base_url: str, name: str) -> ApiClient:
    client = ApiClient(base_url)
    assert (await client.login(name)).status_code == 200
    return client


async def test_fair_across_users_with_one_worker(cluster: Cluster):
    web = await cluster.web()
    await cluster.worker()
    alice, bob, carol = [await signed_in(web.base_url, name) for name in ("alice", "bob", "carol")]
    try:
        a_jobs = [(await alice.post("/api/jobs", {**SMALL, "steps": 30 if i == 0 else 4})).json()["job"]["id"]
                  for i in range(5)]
        await wait_status(alice, a_jobs[0], ("running",))
        b_job = (await bob.post("/api/jobs", {**SMALL, "steps": 4})).json()["job"]["id"]
        c_job = (await carol.post("/api/jobs", {**SMALL, "steps": 4})).json()["job"]["id"]
        started = {}
        for client, job_id in [*((alice, j) for j in a_jobs), (bob, b_job), (carol, c_job)]:
            started[job_id] = (await wait_status(client, job_id, ("done",), timeout=120))["started_at"]
        assert started[b_job] < started[a_jobs[2]] and started[c_job] < started[a_jobs[2]], started
    finally:
        for client in (alice, bob, carol):
            await client.aclose()


async def test_a_worker_keeps_its_loaded_model(cluster: Cluster, shared_data: Path, database_url: str):
    (shared_data / "models" / "demo-other").symlink_to((shared_data / "models" / MODEL).resolve(),
                                                        target_is_directory=True)
    web = await cluster.web()
    ports = [str(free_port()), str(free_port())]
    workers = [await cluster.worker(VA_WORKER_METRICS_PORT=port) for port in ports]
    alice, bob = await signed_in(web.base_url, "alice"), await signed_in(web.base_url, "bob")
    carol, dave = await signed_in(web.base_url, "carol"), await signed_in(web.base_url, "dave")
    long = {**SMALL, "width": 512, "height": 512, "steps": 150}  # runs until it is cancelled
    try:
        # Every job but Carol's runs until it is cancelled, so that at each choice exactly one worker is free,
        # whatever the machine's pace: the choice is that worker's alone.
        tiny_run = (await alice.post("/api/jobs", long)).json()["job"]["id"]
        await wait_status(alice, tiny_run, ("running",))
        other_run = (await bob.post("/api/jobs", {**long, "model": "demo-other"})).json()["job"]["id"]
        await wait_status(bob, other_run, ("running",))
        # Carol's job is first in line (neither has been served, she queued first), Dave's second.
        carols = (await carol.post("/api/jobs", {**SMALL, "model": "demo-other", "steps": 2})).json()["job"]["id"]
        daves = (await dave.post("/api/jobs", long)).json()["job"]["id"]
        await alice.delete(f"/api/jobs/{tiny_run}")
        await wait_status(dave, daves, ("running",))  # the freed worker went past Carol to the model it holds
        busy = "the other worker must still be busy, for the choice to have been the free worker's alone"
        assert (await job_now(bob, other_run))["status"] == "running", busy
        await bob.delete(f"/api/jobs/{other_run}")
        await wait_status(carol, carols, ("done",))
        assert (await job_now(dave, daves))["status"] == "running", busy
        await dave.delete(f"/api/jobs/{daves}")
        rows = job_rows(database_url)
        assert rows[daves]["worker_id"] == rows[tiny_run]["worker_id"], "Dave's job went to the worker holding it"
        assert rows[carols]["worker_id"] == rows[other_run]["worker_id"] != rows[tiny_run]["worker_id"]
        loads = 0
        async with httpx.AsyncClient() as client:
            for port in ports:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                loads += sum(float(value) for value in
                             re.findall(r'^va_inference_model_cache_misses_total\{[^}]*\} (\S+)$', text, re.M))
        assert loads == 2, f"each worker loaded one model and kept taking its jobs; {loads} loads"
        assert len(workers) == 2
    finally:
        for client in (alice, bob, carol, dave):
            await client.aclose()


async def test_kill_9_mid_job_the_job_runs_again_elsewhere_exactly_once(cluster: Cluster, database_url: str):
    web = await cluster.web()
    workers = [await cluster.worker(), await cluster.worker()]
    alice = await signed_in(web.base_url, "alice")
    ws = await WsClient.connect(web.base_url, api=alice)
    try:
        job_id = (await alice.post("/api/jobs", {**SMALL, "steps": 60})).json()["job"]["id"]
        await ws.request("sub", topic=f"job:{job_id}", since=0)
        await ws.wait_for(lambda e: e.get("type") == "gen.progress" and e.get("step", 0) >= 3, 60)
        victim = worker_running(workers, job_rows(database_url)[job_id])
        victim.kill()
        killed_at = time.monotonic()
        restarted = await ws.wait_for(lambda e: e.get("type") == "gen.restarted", 30)
        assert restarted["attempt"] == 2
        assert time.monotonic() - killed_at < 2 * float(cluster.env["VA_WORKER_HEARTBEAT_SECS"]) + 2.0
        events = await events_until_final(ws, job_id)
        assert events[-1]["type"] == "gen.done"
        await asyncio.sleep(1.0)  # a duplicate would show up now, unread in ws.events (the first was taken)
        with pytest.raises((AssertionError, TimeoutError)):
            await ws.wait_for(lambda e: e.get("type") == "gen.done" and e.get("job") == job_id, 0.5)
        row = job_rows(database_url)[job_id]
        assert row["status"] == "done" and row["image_count"] == 1 and row["attempts"] == 2
    finally:
        await alice.aclose()
        ws.close()


async def test_a_job_that_keeps_killing_workers_fails_and_the_queue_moves_on(cluster: Cluster,
                                                                           database_url: str):
    cluster.env["VA_JOB_MAX_ATTEMPTS"] = "2"
    web = await cluster.web()
    workers = [await cluster.worker()]
    alice = await signed_in(web.base_url, "alice")
    ws = await WsClient.connect(web.base_url, api=alice)
    try:
        doomed = (await alice.post("/api/jobs", {**SMALL, "steps": 150})).json()["job"]["id"]
        after = (await alice.post("/api/jobs", {**SMALL, "steps": 2})).json()["job"]["id"]
        await ws.request("sub", topic=f"job:{doomed}", since=0)
        victims: set[str | None] = {None}
        for _ in range(2):
            deadline = time.monotonic() + 60
            row = job_rows(database_url)[doomed]
            while row["status"] != "running" or row["worker_id"] in victims:  # until a live worker runs it
                assert time.monotonic() < deadline, row
                await asyncio.sleep(0.05)
                row = job_rows(database_url)[doomed]
            victims.add(row["worker_id"])
            worker_running(workers, row).kill()
            workers.append(await cluster.worker())
        error = await ws.wait_for(lambda e: e.get("type") == "gen.error" and e.get("job") == doomed, 60)
        assert error["code"] == "worker_lost" and "2 times" in error["message"]
        assert (await wait_status(alice, after, ("done",)))["status"] == "done"
    finally:
        await alice.aclose()
        ws.close()


async def test_cancel_from_the_other_web_process(cluster: Cluster):
    web1, web2 = await cluster.web(), await cluster.web()
    await cluster.worker()
    alice = await signed_in(web1.base_url, "alice")
    alice2 = await login(web2.base_url, "alice")
    ws = await WsClient.connect(web1.base_url, api=alice)
    try:
        running = (await alice.post("/api/jobs", {**SMALL, "steps": 150})).json()["job"]["id"]
        waiting = (await alice.post("/api/jobs", {**SMALL, "steps": 2})).json()["job"]["id"]
        for job_id in (running, waiting):
            await ws.request("sub", topic=f"job:{job_id}", since=0)
        progress = await ws.wait_for(lambda e: e.get("job") == running and e["type"] == "gen.progress", 60)
        assert (await alice2.delete(f"/api/jobs/{waiting}")).json()["job"]["status"] == "cancelled"
        cancelled = await ws.wait_for(lambda e: e.get("job") == waiting and e["type"] == "gen.cancelled", 10)
        assert cancelled["started"] is False
        assert (await alice2.delete(f"/api/jobs/{running}")).status_code == 200
        stopped = await ws.wait_for(lambda e: e.get("job") == running and e["type"] == "gen.cancelled", 30)
        assert stopped["step"] < progress["step"] + 10, "cancel reached the worker within a few steps"
        await asyncio.sleep(0.5)
        assert not any(e.get("job") == waiting and e["type"] == "gen.started" for e in ws.events)
        assert (await job_now(alice, running))["status"] == "cancelled"
    finally:
        await alice.aclose()
        await alice2.aclose()
        ws.close()


async def test_restarts_and_sigterm_never_lose_or_steal_a_job(cluster: Cluster, database_url: str):
    web = await cluster.web()
    first = await cluster.worker(VA_WORKER_STOP_GRACE_SECS="0")
    alice = await signed_in(web.base_url, "alice")
    ws = await WsClient.connect(web.base_url, api=alice)
    long_job = {**SMALL, "width": 384, "height": 384, "steps": 150}
    try:
        job_id = (await alice.post("/api/jobs", long_job)).json()["job"]["id"]
        await ws.request("sub", topic=f"job:{job_id}", since=0)
        await ws.wait_for(lambda e: e.get("type") == "gen.progress", 60)
        # A worker starting (and a web process starting) leaves alone a job that a live worker runs.
        second = await cluster.worker(VA_WORKER_STOP_GRACE_SECS="0")
        await cluster.web()
        await asyncio.sleep(2.5)  # several upkeep rounds of the newcomer
        row = job_rows(database_url)[job_id]
        assert row["attempts"] == 1 and row["worker_id"] == worker_id(first) and row["status"] in ("running", "done")
        # SIGTERM with no grace: the job goes back to the queue and runs on the other worker.
        job_id = (await alice.post("/api/jobs", long_job)).json()["job"]["id"]
        await ws.request("sub", topic=f"job:{job_id}", since=0)
        await ws.wait_for(lambda e: e.get("job") == job_id and e.get("type") == "gen.progress", 60)
        victim = worker_running([first, second], job_rows(database_url)[job_id])
        other = second if victim is first else first
        victim.terminate()
        assert await victim.wait_exit(30) == 0
        requeued = await ws.wait_for(lambda e: e.get("job") == job_id and e.get("type") == "gen.requeued", 10)
        assert requeued["reason"] == "worker_stopped"
        events = await events_until_final(ws, job_id, timeout=120)
        assert events[-1]["type"] == "gen.done"
        row = job_rows(database_url)[job_id]
        assert row["image_count"] == 1 and row["worker_id"] == worker_id(other) and row["attempts"] == 1
        # SIGTERM with a grace: the running job finishes first.
        graceful = await cluster.worker()
        other.terminate()
        assert await other.wait_exit(30) == 0
        job_id = (await alice.post("/api/jobs", {**SMALL, "steps": 20})).json()["job"]["id"]
        await wait_status(alice, job_id, ("running",))
        graceful.terminate()
        assert await graceful.wait_exit(60) == 0
        assert (await job_now(alice, job_id))["status"] == "done"
    finally:
        await alice.aclose()
        ws.close()


async def test_redis_restarted_empty_every_queued_job_still_runs_once(shared_data: Path, database_url: str,
                                                                    tmp_path: Path, own_redis):
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(shared_data, cluster_env(database_url, own_redis.url, "va:restart:"), logs)
    cluster.migrate()
    try:
        web = await cluster.web()
        await cluster.worker()
        alice = await signed_in(web.base_url, "alice")
        ids = [(await alice.post("/api/jobs", {**SMALL, "steps": 40 if i == 0 else 3})).json()["job"]["id"]
               for i in range(4)]
        await wait_status(alice, ids[0], ("running",))
        own_redis.stop()
        await asyncio.sleep(1.0)
        own_redis.start()
        for job_id in ids:
            await wait_status(alice, job_id, ("done",), timeout=120)
        rows = job_rows(database_url)
        assert all(rows[job_id]["image_count"] == 1 for job_id in ids), "each ran to completion once"
        await alice.aclose()
    finally:
        cluster.stop_all()


async def test_bad_input_fails_alone(cluster: Cluster, shared_data: Path):
    # Listed (its index and some weights are there) but not loadable: the UNet is missing.
    broken = shared_data / "models" / "demo-broken"
    shutil.copytree((shared_data / "models" / MODEL).resolve(), broken, ignore=shutil.ignore_patterns("unet"))
    web = await cluster.web()
    worker = await cluster.worker()
    alice = await signed_in(web.base_url, "alice")
    ws = await WsClient.connect(web.base_url, api=alice)
    try:
        job_id = (await alice.post("/api/jobs", {**SMALL, "model": "demo-broken"})).json()["job"]["id"]
        await ws.request("sub", topic=f"job:{job_id}", since=0)
        error = (await events_until_final(ws, job_id))[-1]
        assert error["type"] == "gen.error" and error["code"] == "model_unavailable", error
        client = redis.from_url("redis://127.0.0.1:6379/0")
        await client.xadd(cluster.env["VA_REDIS_PREFIX"] + "jobs:stream", {"job": "\x00garbage"})
        await client.aclose()
        good = (await alice.post("/api/jobs", {**SMALL, "steps": 2})).json()["job"]["id"]
        assert (await wait_status(alice, good, ("done", "failed")))["status"] == "done"
        assert worker.alive() and "dead letter" in worker.log()
    finally:
        await alice.aclose()
        ws.close()


async def test_a_web_process_without_redis_refuses_new_jobs_clearly(shared_data: Path, database_url: str,
                                                                    tmp_path: Path, own_redis):
    logs = tmp_path / "logs"
    logs.mkdir()
    cluster = Cluster(shared_data, cluster_env(database_url, own_redis.url, "va:down:"), logs)
    cluster.migrate()
    try:
        web = await cluster.web()
        alice = await signed_in(web.base_url, "alice")
        own_redis.stop()
        response = await alice.post("/api/jobs", {**SMALL, "steps": 2})
        assert response.status_code == 503 and error_code(response) == "queue_unavailable", response.text
        ready = await alice.get("/readyz")
        assert ready.status_code == 503 and ready.json()["checks"]["redis"].startswith("error"), ready.text
        assert (await alice.get("/api/jobs")).json()["jobs"] == [], "nothing half-stored"
        await alice.aclose()
    finally:
        cluster.stop_all()
