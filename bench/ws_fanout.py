"""Benchmark: one room, 100 and 1,000 clients, every message delivered to all.

Measures delivered messages per second and send-to-receive latency (p50/p99) for
our server with the in-process hub (SQLite) and with the Redis hub (MariaDB +
Redis), and, in the same run, for a minimal `websockets` broadcast server
(bench/ws_reference_server.py) with the same clients and the same message size.
Our throughput is reported as a ratio of the reference. Figures only, not a test.

    .venv/bin/python bench/ws_fanout.py [--clients 100 1000] [--messages 300] [--rounds 3]

Each server runs --rounds times, the rounds of the reference and of ours taking turns, and the
median is printed (a noisy shared machine moves single runs by tens of percent). Beside the rate,
each server's own CPU time per delivery while the events flow (psutil, its process alone, connecting
and subscribing left out), and this process's share of a core: on 2 cores the clients can cap the
rate (near 100 %, they do), and the server's cost is what the server code decides. Most receivers
count their events without decoding them (count_events), so the size of an event weighs on the server,
not on the clients.

Chat publishers wait for acks: with the default window the chat rate is the round trip's; a window
of 128 or more (--publish-window) shows what the server can store and fan out (at 100 sockets 512 still
gave 13-16 % more than 128 on a slow day: with 4 x 128 in flight one commit's batch is nearly all of them).

Servers run as subprocesses; the clients and the publisher share this process,
so on a 2-core machine the client side is part of what is measured (for all
three servers alike).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import msgpack
import psutil
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from bench.cpu import cpu_seconds  # noqa: E402
from bench.http_api import free_port, make_token, start_server  # noqa: E402

ROOM = "bench"
# Several people talk in a busy room; each publisher socket keeps this many chat messages unacknowledged
# (--publish-window).
PUBLISHERS = 4
PUBLISH_WINDOW = 8
# Receivers that decode every event and record its latency; the others only count theirs (count_events).
DECODING_RECEIVERS = 10
# Publishers that wait for nothing (typing, the reference) let the receivers run after this many sends.
YIELD_EVERY = 8


def unpack_events(frame: bytes) -> list[dict]:
    decoded = msgpack.unpackb(frame, raw=False)
    return decoded if isinstance(decoded, list) else [decoded]


def event_marker(kind: str) -> bytes:
    """The bytes every encoded event of this kind holds once: its "type" key followed by its value."""
    return msgpack.packb("type") + msgpack.packb(kind)


async def count_events(ws, marker: bytes, expected: int, done: asyncio.Event, counter: list[int]) -> None:
    """Counts the events of one kind arriving at one client, by a byte search for ``marker`` in each frame.

    All clients run in this one Python thread, and decoding every copy of a 270-byte chat event (1.8 us
    against 0.55 us for a typing event) made this process, not the server, set the chat rate; the few
    Receivers decode everything and record the latency.
    """
    async for frame in ws:
        counter[0] += frame.count(marker)
        if counter[0] >= expected:
            done.set()


class Receiver:
    """Counts events arriving at one client and records their latency.

    chat.msg events carry their send time in the text; typing events carry nothing of the
    sender's, so the k-th typing event from a publisher is matched with its k-th send time.
    """

    def __init__(self, ws, latencies: list[float], expected: int, done: asyncio.Event, counter: list[int],
                 typing_sent: dict[int, list[float]] | None = None):
        self.ws, self.latencies, self.expected, self.done, self.counter = ws, latencies, expected, done, counter
        self.typing_sent = typing_sent
        self.typing_seen: dict[int, int] = {}

    async def run(self) -> None:
        async for frame in self.ws:
            now = time.perf_counter()
            for event in unpack_events(frame):
                kind = event.get("type")
                if kind == "chat.msg":
                    self.latencies.append(now - float(event["message"]["text"].split()[1]))
                elif kind == "typing" and self.typing_sent is not None:
                    sender = event["user"]["id"]
                    k = self.typing_seen.get(sender, 0)
                    self.typing_seen[sender] = k + 1
                    self.latencies.append(now - self.typing_sent[sender][k])
                else:
                    continue  # presence and acks
                self.counter[0] += 1
            if self.counter[0] >= self.expected:
                self.done.set()


async def run_ours(base: str, tokens: list[tuple[int, str]], clients: int, messages: int, path: str,
                   pid: int, window: int) -> dict:
    ws_url = base.replace("http://", "ws://") + "/ws"
    headers = {"Origin": base}
    sockets = [await connect(ws_url, additional_headers=headers, max_size=None, compression=None)
               for _ in range(clients)]
    for ws in sockets:
        await ws.send(msgpack.packb({"op": "sub", "topic": f"room:{ROOM}"}))
    # Drain the ack + presence of each subscription.
    for ws in sockets:
        seen = 0
        while seen < 2:
            seen += len(unpack_events(await ws.recv()))
    publishers = []
    for _user_id, token in tokens:
        publisher = await connect(f"{ws_url}?token={token}", additional_headers=headers, max_size=None,
                                  compression=None)
        await publisher.send(msgpack.packb({"op": "sub", "topic": f"room:{ROOM}", "ref": "s"}))
        publishers.append(publisher)
    return await drive(sockets, publishers, clients, messages, ours=True, path=path, window=window,
                       user_ids=[user_id for user_id, _ in tokens], pid=pid)


async def run_reference(port: int, clients: int, messages: int, frame_size: int, pid: int) -> dict:
    url = f"ws://127.0.0.1:{port}/"
    sockets = [await connect(url, max_size=None, compression=None) for _ in range(clients)]
    publishers = [await connect(url, max_size=None, compression=None) for _ in range(PUBLISHERS)]
    return await drive(sockets, publishers, clients, messages, ours=False, frame_size=frame_size, pid=pid)


async def drive(sockets, publishers, clients: int, messages: int, *, ours: bool, frame_size: int = 0,
                path: str = "chat", user_ids: list[int] | None = None, pid: int,
                window: int = PUBLISH_WINDOW) -> dict:
    latencies: list[float] = []
    done = asyncio.Event()
    counter = [0]
    typing = ours and path == "typing"
    # Publishers are subscribed too (ours) or broadcast targets (the reference): their copies count.
    expected = (clients + len(publishers)) * messages
    typing_sent: dict[int, list[float]] = {user_id: [] for user_id in user_ids or []}
    marker = event_marker("typing" if typing else "chat.msg")
    tasks = [asyncio.create_task(Receiver(ws, latencies, expected, done, counter, typing_sent).run())
             for ws in sockets[:DECODING_RECEIVERS]]
    tasks += [asyncio.create_task(count_events(ws, marker, expected, done, counter))
              for ws in sockets[DECODING_RECEIVERS:]]
    run_id = uuid.uuid4().hex[:8]

    async def publish(index: int, publisher) -> None:
        unacknowledged = asyncio.Semaphore(window)

        async def read_replies() -> None:
            async for frame in publisher:
                now = time.perf_counter()
                for event in unpack_events(frame):
                    if event.get("type") == "ack" and "message" in event:
                        unacknowledged.release()
                    elif event.get("type") == "chat.msg":
                        latencies.append(now - float(event["message"]["text"].split()[1]))
                        counter[0] += 1
                    elif event.get("type") == "typing":
                        counter[0] += 1
                    elif event.get("type") == "error":
                        raise RuntimeError(f"publisher got an error: {event}")
                if counter[0] >= expected:
                    done.set()

        reader = asyncio.create_task(read_replies())
        tasks.append(reader)
        for i in range(index, messages, len(publishers)):
            text = f"m{i} {time.perf_counter():.9f}"
            if typing:
                typing_sent[user_ids[index]].append(time.perf_counter())
                await publisher.send(msgpack.packb({"op": "typing", "room": ROOM}))
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            elif ours:
                await unacknowledged.acquire()
                await publisher.send(msgpack.packb(
                    {"op": "chat.send", "room": ROOM, "text": text, "ref": f"{run_id}-{i}"}))
            else:
                event = {"type": "chat.msg", "topic": f"room:{ROOM}", "seq": i,
                         "message": {"text": text, "pad": "x" * max(0, frame_size - 60)}}
                await publisher.send(msgpack.packb(event))
                if i % YIELD_EVERY == 0:
                    await asyncio.sleep(0)

    server, clients = psutil.Process(pid), psutil.Process()
    server_cpu, clients_cpu = cpu_seconds(server), cpu_seconds(clients)
    started = time.perf_counter()
    try:
        # Publishing waits for acks: a server that stops answering must not stall the run.
        await asyncio.wait_for(asyncio.gather(*(publish(i, p) for i, p in enumerate(publishers))), 300)
        await asyncio.wait_for(done.wait(), 120)
    except TimeoutError:
        raise RuntimeError(f"only {counter[0]} of {expected} deliveries arrived") from None
    elapsed = time.perf_counter() - started
    server_cpu, clients_cpu = cpu_seconds(server) - server_cpu, cpu_seconds(clients) - clients_cpu
    for task in tasks:
        task.cancel()
    for ws in sockets + publishers:
        await ws.close()
    latencies.sort()
    return {
        "server_cpu_us": server_cpu / expected * 1e6,
        # The clients run in this one Python thread: near a full core, they (not the server) set the rate.
        "clients_cpu_share": clients_cpu / elapsed,
        "delivered_per_sec": expected / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "seconds": elapsed,
    }


def our_frame_size(base: str, token: str, path: str) -> int:
    """The size of one chat.msg frame from our server, so the reference sends the same."""

    async def measure() -> int:
        ws_url = base.replace("http://", "ws://") + "/ws"
        async with connect(f"{ws_url}?token={token}", additional_headers={"Origin": base}) as ws:
            await ws.send(msgpack.packb({"op": "sub", "topic": "room:probe"}))
            await ws.recv()
            await ws.recv()
            if path == "typing":
                await ws.send(msgpack.packb({"op": "typing", "room": "probe"}))
            else:
                await ws.send(msgpack.packb({"op": "chat.send", "room": "probe",
                                             "text": f"m0 {time.perf_counter():.9f}"}))
            wanted = "typing" if path == "typing" else "chat.msg"
            while True:
                frame = await ws.recv()
                if any(e.get("type") == wanted for e in unpack_events(frame)):
                    return len(frame)

    return asyncio.run(asyncio.wait_for(measure(), 60))


PATHS = {
    "typing": "fan-out (typing events: no storage, the hub and the sockets alone)",
    "chat": "chat messages (each stored in the database first, then fanned out)",
}


def median_run(runs: list[dict]) -> dict:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def make_user_token(base: str) -> tuple[int, str]:
    token = make_token(base)
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        return client.get("/api/me").json()["user"]["id"], token


# Typing is collapsed to one event per user and room per 2 s by default; 0 fans every one out.
BENCH_SETTINGS = {"VA_CHAT_SEND_LIMIT": "100000000", "VA_WS_MAX_FRAMES_PER_SEC": "1000000",
                  "VA_TYPING_INTERVAL_SECS": "0"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--messages", type=int, default=300, help="events per run (divided by 5 at 1,000 clients)")
    parser.add_argument("--paths", nargs="+", choices=sorted(PATHS), default=["typing", "chat"])
    parser.add_argument("--modes", nargs="+", choices=["in-process", "redis"], default=["in-process", "redis"])
    parser.add_argument("--rounds", type=int, default=3, help="runs per server; the median is printed")
    parser.add_argument("--deadline-secs", type=float, default=3600, help="give up (exit 2) after this long")
    parser.add_argument("--publish-window", type=int, default=PUBLISH_WINDOW,
                        help="chat messages each publisher keeps unacknowledged (ours waits for acks: with a small "
                             "window the rate is the round trip's, not the server's capacity)")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    with guard.scratch_database() as database:
        measure(args, database)


def measure(args: argparse.Namespace, database: str) -> None:
    data_dirs = [tempfile.mkdtemp(), tempfile.mkdtemp()]
    all_modes = {
        "in-process hub": {"VA_DATA_DIR": data_dirs[0]},
        "Redis hub": {"VA_DATA_DIR": data_dirs[1],
                      "VA_DATABASE_URL": f"mysql+aiomysql://root@127.0.0.1:3306/{database}",
                      "VA_REDIS_URL": "redis://127.0.0.1:6379/0", "VA_REDIS_PREFIX": f"va:bench:{database}:"},
    }
    wanted = {"in-process": "in-process hub", "redis": "Redis hub"}
    modes = {wanted[m]: all_modes[wanted[m]] for m in args.modes}
    servers = []
    try:
        for env in modes.values():
            if "VA_DATABASE_URL" in env:
                guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT,
                          env={**os.environ, **env})
        endpoints = {}
        pids: dict[str, int] = {}
        for name, env in modes.items():
            port = free_port()
            servers.append(start_server({**env, **BENCH_SETTINGS}, port))
            pids[name] = servers[-1].pid
            base = f"http://127.0.0.1:{port}"
            endpoints[name] = (base, [make_user_token(base) for _ in range(PUBLISHERS)])
        ref_port = free_port()
        servers.append(guard.track(subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "ws_reference_server.py"), str(ref_port)])))
        pids["reference"] = servers[-1].pid
        time.sleep(1.0)
        for path in args.paths:
            base, tokens = next(iter(endpoints.values()))
            frame_size = our_frame_size(base, tokens[0][1], path)
            print(f"\n== {PATHS[path]}: one room, every event to every client; frame {frame_size} bytes; "
                  f"{PUBLISHERS} publishers" + (f", each with {args.publish_window} messages unacknowledged"
                                                if path == "chat" else ""))
            for clients in args.clients:
                messages = args.messages if clients <= 100 else max(20, args.messages // 5)
                runs: dict[str, list[dict]] = {"reference": [], **{name: [] for name in endpoints}}
                for _ in range(args.rounds):
                    runs["reference"].append(asyncio.run(asyncio.wait_for(
                        run_reference(ref_port, clients, messages, frame_size, pids["reference"]), 600)))
                    for name, (base, tokens) in endpoints.items():
                        runs[name].append(asyncio.run(asyncio.wait_for(
                            run_ours(base, tokens, clients, messages, path, pids[name], args.publish_window), 600)))
                reference = median_run(runs["reference"])
                print(f"{clients} clients x {messages} events, median of {args.rounds} rounds")
                print(f"  websockets broadcast(): {reference['delivered_per_sec']:9.0f} delivered/s  "
                      f"p50 {reference['p50_ms']:7.1f} ms  p99 {reference['p99_ms']:7.1f} ms  "
                      f"server CPU {reference['server_cpu_us']:.2f} us/delivery; clients "
                      f"{reference['clients_cpu_share']:.0%} of a core")
                for name in endpoints:
                    result = median_run(runs[name])
                    each = ", ".join(f"{r['delivered_per_sec']:.0f}" for r in runs[name])
                    ratio = result["delivered_per_sec"] / reference["delivered_per_sec"]
                    print(f"  ours, {name:14s}: {result['delivered_per_sec']:9.0f} delivered/s  "
                          f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  = {ratio:.2f}x reference"
                          f"  (rounds: {each}); server CPU {result['server_cpu_us']:.2f} us/delivery "
                          f"= {reference['server_cpu_us'] / result['server_cpu_us']:.2f}x less than the reference's; "
                          f"clients {result['clients_cpu_share']:.0%} of a core")
    finally:
        for server in servers:
            guard.stop(server)


if __name__ == "__main__":
    main()
