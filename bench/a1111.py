"""The front doors under load: the A1111 API's overhead, progress polling, Discord's deferred answer.

Starts real processes (tests/support/processes.py): a web process without the engine and one
worker over MariaDB + Redis Streams, on the tiny demo model, and a local stand-in of Discord's
API in this process (webhook edits are accepted and counted). Prints, side by side in one run:

- seconds per txt2img call through `POST /sdapi/v1/txt2img` (waits, answers base64 PNGs) vs the
  same job through our own API (`POST /api/jobs`, wait for `gen.done` on the WebSocket, GET the
  PNG), medians of rounds, and the overhead in %;
- CPU of the web process while 20 callers poll `/sdapi/v1/progress` at 10 Hz, each with a job in
  the queue (one running, the rest waiting), against the same window without polling (% of one core);
  beside it, the same polling of `/api/me` and of a bare Tornado JSON handler (the floor of any
  Tornado request on this machine);
- time from a signed `/imagine` interaction to its deferred answer with the queue full of other
  users' jobs, p50/p99.

Figures only, never pass/fail; every wait is bounded and a failure exits non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from nacl.signing import SigningKey
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import guard  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.http_api import free_port, start_reference  # noqa: E402
from bench.loadgen import _read_response as read_response  # noqa: E402
from inference.demo_model import DEMO_MODEL_NAME, build_demo_model  # noqa: E402
from tests.support.client import ApiClient  # noqa: E402
from tests.support.processes import Cluster  # noqa: E402
from tests.support.ws import WsClient  # noqa: E402

COOKIE_SECRET = "bench-cookie-secret-" + "x" * 40
APP_ID = "123456789012345678"
WAIT_SECS = 180.0
POLL_HZ = 10


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class Edits(web.RequestHandler):
    count = 0

    def check_xsrf_cookie(self) -> None:
        return

    def patch(self, *_args: str) -> None:
        Edits.count += 1
        self.finish({"id": "1"})

    # A job refused after the deferred answer (the queue filled meanwhile): the original goes, a follow-up says why.
    def delete(self, *_args: str) -> None:
        self.set_status(204)
        self.finish()

    def post(self, *_args: str) -> None:
        Edits.count += 1
        self.finish({"id": "2"})


async def signed_in(base_url: str, name: str) -> tuple[ApiClient, str]:
    client = ApiClient(base_url)
    await client.register(name)
    token = (await client.post("/api/tokens", {"name": "bench"})).json()["token"]
    return client, token


async def own_api_call(client: ApiClient, ws: WsClient, body: dict) -> float:
    """POST /api/jobs, wait for gen.done on the socket, GET the PNG: seconds."""
    started = time.perf_counter()
    response = await client.post("/api/jobs", body)
    job_id = response.json()["job"]["id"]
    await ws.request("sub", topic=f"job:{job_id}", since=0)
    done = await ws.wait_for(lambda e: e.get("job") == job_id and e["type"] in ("gen.done", "gen.error"), WAIT_SECS)
    assert done["type"] == "gen.done", done
    png = await client.get(done["images"][0]["url"])
    assert png.status_code == 200
    return time.perf_counter() - started


async def sdapi_call(sdapi: httpx.AsyncClient, body: dict) -> float:
    started = time.perf_counter()
    response = await sdapi.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200 and response.json()["images"], response.text[:300]
    return time.perf_counter() - started


async def overhead(base_url: str, args: argparse.Namespace) -> None:
    client, token = await signed_in(base_url, "overhead")
    ws = await WsClient.connect(base_url, api=client)
    sdapi = httpx.AsyncClient(base_url=base_url, auth=("overhead", token), timeout=WAIT_SECS)
    ours = {"model": DEMO_MODEL_NAME, "prompt": "a lighthouse at dusk", "width": 64, "height": 64,
            "steps": args.steps, "sampler": "Euler", "seed": 7}
    theirs = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "steps": args.steps,
              "sampler_name": "Euler", "seed": 7}
    await sdapi_call(sdapi, theirs)  # the worker loads the model once, outside the timing
    own_rounds, sdapi_rounds = [], []
    for _ in range(args.rounds):
        # Interleaved within a round, so both see the same machine.
        own, via = [], []
        for _ in range(args.calls):
            own.append(await own_api_call(client, ws, ours))
            via.append(await sdapi_call(sdapi, theirs))
        own_rounds.append(statistics.median(own))
        sdapi_rounds.append(statistics.median(via))
    own_s, via_s = statistics.median(own_rounds), statistics.median(sdapi_rounds)
    print(f"txt2img, 64², {args.steps} steps, {args.calls} calls per round, median of {args.rounds} rounds:")
    print(f"  our API (POST /api/jobs + gen.done + GET png): {own_s:.3f} s/call "
          f"(rounds {', '.join(f'{v:.3f}' for v in own_rounds)})")
    print(f"  /sdapi/v1/txt2img (waits, base64 PNG):        {via_s:.3f} s/call "
          f"(rounds {', '.join(f'{v:.3f}' for v in sdapi_rounds)})")
    print(f"  overhead: {(via_s - own_s) / own_s * 100:+.1f} %")
    ws.close()
    await sdapi.aclose()
    await client.aclose()


async def polling_cpu(base_url: str, pid: int, args: argparse.Namespace) -> None:
    callers = [await signed_in(base_url, f"poller{i}") for i in range(args.pollers)]
    body = {"model": DEMO_MODEL_NAME, "prompt": "a slow one", "width": 128, "height": 128, "steps": 150,
            "sampler": "Euler"}
    jobs = []
    for client, _token in callers:
        jobs.append((client, (await client.post("/api/jobs", body)).json()["job"]["id"]))

    async def cpu_over(process: psutil.Process, seconds: float) -> float:
        before = cpu_seconds(process)
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        return (cpu_seconds(process) - before) / (time.perf_counter() - started) * 100

    host, port = base_url.removeprefix("http://").split(":")

    def requests_for(path: str, scheme: str, port: str = port) -> list[bytes]:
        out = []
        for i, (_client, token) in enumerate(callers):
            credential = base64.b64encode(f"poller{i}:{token}".encode()).decode() if scheme == "Basic" else token
            out.append(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: {scheme} {credential}\r\n\r\n"
                       .encode())
        return out

    async def poll(port: str, request: bytes, stop: asyncio.Event, polls: list[int]) -> None:
        """One caller at 10 Hz on a kept-alive connection (raw asyncio streams: the client costs little)."""
        reader, writer = await asyncio.open_connection(host, int(port))
        next_at = time.perf_counter()
        try:
            while not stop.is_set():
                writer.write(request)
                status = await asyncio.wait_for(read_response(reader), 30)
                assert status == 200, status
                polls[0] += 1
                next_at += 1 / POLL_HZ
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        finally:
            writer.close()

    async def measure(process: psutil.Process, port: str, requests: list[bytes]
                      ) -> tuple[list[float], list[float], list[float], float]:
        quiet, busy, per_poll = [], [], []
        rate = 0.0
        for _ in range(args.rounds):
            quiet.append(await cpu_over(process, args.seconds))
            stop, polls = asyncio.Event(), [0]
            tasks = [asyncio.create_task(poll(port, request, stop, polls)) for request in requests]
            await asyncio.sleep(1.0)  # connections open
            before, started = polls[0], time.perf_counter()
            busy.append(await cpu_over(process, args.seconds))
            served = polls[0] - before
            rate = served / (time.perf_counter() - started)
            per_poll.append((busy[-1] - quiet[-1]) / 100 * args.seconds / max(1, served) * 1000)
            stop.set()
            await asyncio.gather(*tasks)
        return quiet, busy, per_poll, rate

    def show(name: str, quiet: list[float], busy: list[float], per_poll: list[float], rate: float) -> None:
        cost = statistics.median(busy) - statistics.median(quiet)
        print(f"  {name}: ~{rate:.0f} req/s, {cost:.1f} % of a core over the idle "
              f"{statistics.median(quiet):.1f} % (rounds {', '.join(f'{v:.1f}' for v in busy)}), "
              f"{statistics.median(per_poll):.2f} ms CPU per request -> "
              f"{statistics.median(per_poll) * args.pollers * POLL_HZ / 10:.0f} % of a core at the full "
              f"{args.pollers * POLL_HZ} req/s")

    web_process = psutil.Process(pid)
    # The floor: a bare Tornado handler (no auth, no database, a fixed small JSON body) polled the same way.
    floor_port = str(free_port())
    floor_server = start_reference(int(floor_port))
    try:
        print(f"polling, {args.pollers} callers at {POLL_HZ} Hz, each with a job queued (one running on the worker), "
              f"CPU of the server process, median of {args.rounds} × {args.seconds:g} s:")
        show("GET /sdapi/v1/progress (Basic auth)", *await measure(
            web_process, port, requests_for("/sdapi/v1/progress", "Basic")))
        show("reference GET /api/me (bearer)     ", *await measure(
            web_process, port, requests_for("/api/me", "Bearer")))
        show("floor: bare Tornado JSON handler   ", *await measure(
            psutil.Process(floor_server.pid), floor_port, requests_for("/api/me", "Bearer", floor_port)))
    finally:
        guard.stop(floor_server)
    for client, job_id in jobs:
        await client.delete(f"/api/jobs/{job_id}")
    for client, _token in callers:
        await client.aclose()


async def discord_latency(base_url: str, key: SigningKey, args: argparse.Namespace) -> None:
    # Fill the queue with other users' jobs, up to the cap less what the Discord users will add.
    fillers = [await signed_in(base_url, f"filler{i}") for i in range(args.fill_users)]
    body = {"model": DEMO_MODEL_NAME, "prompt": "filler", "width": 128, "height": 128, "steps": 150,
            "sampler": "Euler"}
    waiting = 0
    for client, _token in fillers:
        for _ in range(args.per_user):
            response = await client.post("/api/jobs", body)
            waiting += response.status_code == 202
    linked = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        async def interact(payload: dict) -> tuple[float, dict]:
            raw = json.dumps(payload).encode()
            stamp = str(int(time.time()))
            headers = {"X-Signature-Ed25519": key.sign(stamp.encode() + raw).signature.hex(),
                       "X-Signature-Timestamp": stamp, "Content-Type": "application/json"}
            started = time.perf_counter()
            response = await http.post("/discord/interactions", content=raw, headers=headers)
            return time.perf_counter() - started, response.json()

        for i in range(args.discord_users):
            client, _token = await signed_in(base_url, f"discord{i}")
            code = (await client.post("/api/discord/link-code")).json()["code"]
            _s, answer = await interact(_command("link", {"code": code}, str(1000 + i), "t"))
            assert "Linked" in answer["data"]["content"], answer
            linked.append(client)
        seconds, kinds = [], []
        for n in range(args.interactions):
            user = str(1000 + n % args.discord_users)
            elapsed, answer = await interact(_command("imagine", {"prompt": f"a fox {n}"}, user, f"tok{n}"))
            seconds.append(elapsed)
            kinds.append(answer["type"])
    deferred = [s for s, kind in zip(seconds, kinds) if kind == 5]
    refused = [s for s, kind in zip(seconds, kinds) if kind == 4]
    print(f"signed /imagine -> answer, queue holding {waiting} other jobs (cap {args.queue_cap}), "
          f"{args.interactions} interactions:")
    if deferred:
        print(f"  deferred (type 5): {len(deferred)}, p50 {percentile(deferred, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(deferred, 0.99) * 1000:.0f} ms, max {max(deferred) * 1000:.0f} ms")
    if refused:
        print(f"  refused, queue full (type 4, ephemeral): {len(refused)}, "
              f"p50 {percentile(refused, 0.5) * 1000:.0f} ms, p99 {percentile(refused, 0.99) * 1000:.0f} ms")
    print(f"  webhook edits received by the stand-in meanwhile: {Edits.count}")
    for client in linked:
        await client.aclose()
    for client, _token in fillers:
        await client.aclose()


def _command(name: str, options: dict, user: str, token: str) -> dict:
    return {"id": "1", "application_id": APP_ID, "type": 2, "token": token, "guild_id": "1",
            "member": {"user": {"id": user}},
            "data": {"name": name, "options": [{"name": k, "type": 3, "value": v} for k, v in options.items()]}}


async def main_async(args: argparse.Namespace) -> None:
    stand_in = HTTPServer(web.Application([(r"/api/v10/webhooks/.*", Edits)]))
    sockets = bind_sockets(0, "127.0.0.1")
    stand_in.add_sockets(sockets)
    key = SigningKey.generate()
    with tempfile.TemporaryDirectory() as root, guard.scratch_database() as database:
        data = Path(root) / "data"
        build_demo_model(data / "models" / DEMO_MODEL_NAME)
        logs = Path(root) / "logs"
        logs.mkdir()
        cluster = Cluster(data, {
            "VA_COOKIE_SECRET": COOKIE_SECRET, "VA_REGISTER_LIMIT": "100000",
            "VA_DATABASE_URL": f"mysql+aiomysql://root@127.0.0.1:3306/{database}",
            "VA_REDIS_URL": "redis://127.0.0.1:6379/0", "VA_REDIS_PREFIX": f"va:bench:{database}:",
            "VA_QUEUE_MAX_GLOBAL": str(args.queue_cap), "VA_QUEUE_MAX_PER_USER": str(args.per_user),
            "VA_DISCORD_PUBLIC_KEY": key.verify_key.encode().hex(), "VA_DISCORD_APPLICATION_ID": APP_ID,
            "VA_DISCORD_API_BASE": f"http://127.0.0.1:{sockets[0].getsockname()[1]}/api/v10",
            "VA_IMAGINE_SIDE_PX": "64", "VA_IMAGINE_STEPS": "4"}, logs)
        try:
            cluster.migrate()
            web_process = await cluster.web()
            await cluster.worker()
            if args.only in (None, "overhead"):
                await overhead(web_process.base_url, args)
            if args.only in (None, "polling"):
                await polling_cpu(web_process.base_url, web_process.pid, args)
            if args.only in (None, "discord"):
                await discord_latency(web_process.base_url, key, args)
        finally:
            cluster.stop_all()
            stand_in.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5, help="txt2img calls per door per round")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--pollers", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0, help="CPU measuring window")
    parser.add_argument("--queue-cap", type=int, default=120)
    parser.add_argument("--per-user", type=int, default=5)
    parser.add_argument("--fill-users", type=int, default=22, help="users whose jobs fill the queue")
    parser.add_argument("--discord-users", type=int, default=10)
    parser.add_argument("--interactions", type=int, default=40)
    parser.add_argument("--only", choices=("overhead", "polling", "discord"), help="one part only")
    parser.add_argument("--deadline-secs", type=float, default=1200, help="give up (exit 2) past this")
    args = parser.parse_args()
    guard.main(lambda: asyncio.run(main_async(args)), deadline_secs=args.deadline_secs)


if __name__ == "__main__":
    main()
