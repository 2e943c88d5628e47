"""Benchmark: 20 editors typing into one collaborative session.

Each editor is a pycrdt document behind its own WebSocket (its own user, invited as an editor),
typing 10 keystrokes a second at its own cursor (one in ten a backspace), each keystroke sent as
one y-protocols update, exactly as the browser's provider does when nobody types faster than its
40 ms coalescing window. Measured: the delay from an update leaving its editor to it arriving at
every other editor (p50/p99 over all deliveries), whether all documents converge, and the bytes
the session's updates take in the database after 10,000 edits (20 editors x 10/s x 50 s), before
and after compaction into one snapshot. Figures only, not a test.

    .venv/bin/python bench/collab.py [--editors 20] [--rate 10] [--seconds 50] [--services]

The server runs as a subprocess (embedded: SQLite + in-process hub; --services: MariaDB + Redis),
with automatic compaction off so the size before compaction can be read; the editors share this
process, so on a 2-core machine the client side is part of what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgpack
from pycrdt import Doc, Text
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import guard  # noqa: E402
from bench.http_api import free_port, make_token, start_server  # noqa: E402
from server.collab import protocol  # noqa: E402
from server.collab.protocol import Kind  # noqa: E402
from server.collab.store import UpdateStore, merge  # noqa: E402
from server.executors import Executors  # noqa: E402
from server.store import database  # noqa: E402

ALPHABET = "abcdefghijklmnopqrstuvwxyz     ,"
BACKSPACE_SHARE = 0.1


class Editor:
    def __init__(self, index: int, ws, session: str, sent: dict[bytes, tuple[int, float]], latencies: list[float]):
        self.index, self.ws, self.session = index, ws, session
        self.doc = Doc()
        self.text = self.doc.get("prompt", type=Text)
        self.sent, self.latencies = sent, latencies
        self.cursor = 0
        self.edits = 0
        self.received = 0
        self.errors: dict[str, int] = {}
        self.rng = random.Random(index)
        # Like Yjs's doc.on('update'): each local transaction's own update (get_update(state) would
        # repeat the document's whole delete set every time).
        self.local: list[bytes] = []
        self.capturing = False
        self.doc.observe(lambda event: self.capturing and self.local.append(event.update))

    async def send(self, data: bytes) -> None:
        await self.ws.send(msgpack.packb({"op": "collab.update", "session": self.session, "data": data},
                                         use_bin_type=True))

    async def sync(self) -> None:
        await self.send(protocol.encode(Kind.SYNC_STEP1, self.doc.get_state()))

    def _apply(self, data: bytes, now: float) -> None:
        message = protocol.parse(data)
        if message.kind is Kind.SYNC_STEP1:
            reply = protocol.encode(Kind.SYNC_STEP2, self.doc.get_update(message.payload))
            asyncio.ensure_future(self.send(reply))
            return
        if not message.edits:
            return
        origin = self.sent.get(message.payload)
        if origin is not None and origin[0] != self.index:
            self.latencies.append(now - origin[1])
            self.received += 1
        if message.payload != protocol.EMPTY_UPDATE:
            before = len(self.text)
            self.doc.apply_update(message.payload)
            # Keep our cursor after the same character when others type before it (roughly, as an editor does).
            if origin is not None and origin[0] != self.index and len(self.text) != before and self.rng.random() < 0.5:
                self.cursor = min(len(self.text), self.cursor + len(self.text) - before)

    async def read(self) -> None:
        async for frame in self.ws:
            now = time.perf_counter()
            events = msgpack.unpackb(frame, raw=False)
            for event in events if isinstance(events, list) else [events]:
                if event.get("type") in ("collab.update", "collab.sync"):
                    self._apply(event["data"], now)
                elif event.get("type") == "error":
                    self.errors[event["code"]] = self.errors.get(event["code"], 0) + 1

    async def type(self, rate: float, seconds: float, start: float) -> None:
        interval = 1.0 / rate
        phase = self.rng.random() * interval
        keystrokes = int(rate * seconds)
        for k in range(keystrokes):
            delay = start + phase + k * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.cursor = min(self.cursor, len(self.text))
            self.capturing = True
            if self.cursor > 0 and self.rng.random() < BACKSPACE_SHARE:
                del self.text[self.cursor - 1:self.cursor]
                self.cursor -= 1
            else:
                self.text.insert(self.cursor, self.rng.choice(ALPHABET))
                self.cursor += 1
            self.capturing = False
            update = self.local.pop()
            self.sent[update] = (self.index, time.perf_counter())
            await self.send(protocol.encode(Kind.UPDATE, update))
            self.edits += 1



def setup_session(base: str, editors: int) -> tuple[str, list[str]]:
    """The owner's session and one bearer token per editor (the owner is editor 0)."""
    tokens = [make_token(base) for _ in range(editors)]
    owner = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {tokens[0]}"}, timeout=30)
    session = owner.post("/api/collab/sessions", json={"title": "bench"}).raise_for_status().json()["session"]["id"]
    for token in tokens[1:]:
        invite = owner.post(f"/api/collab/sessions/{session}/invites", json={"role": "editor"}).raise_for_status()
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as guest:
            guest.post(f"/api/collab/invites/{invite.json()['invite']['token']}/accept").raise_for_status()
    owner.close()
    return session, tokens


async def run_editors(port: int, session: str, tokens: list[str], rate: float, seconds: float) -> dict:
    sent: dict[bytes, tuple[int, float]] = {}
    latencies: list[float] = []
    editors, readers = [], []
    for index, token in enumerate(tokens):
        ws = await connect(f"ws://127.0.0.1:{port}/ws?token={token}", origin=f"http://127.0.0.1:{port}",
                           max_size=2**24, compression=None, ping_interval=None)
        await ws.send(msgpack.packb({"op": "sub", "topic": f"collab:{session}", "ref": "s"}))
        editor = Editor(index, ws, session, sent, latencies)
        editors.append(editor)
        readers.append(asyncio.create_task(editor.read()))
        await editor.sync()
    await asyncio.sleep(1.0)
    start = time.perf_counter() + 0.2
    await asyncio.gather(*(editor.type(rate, seconds, start) for editor in editors))
    typed_secs = time.perf_counter() - start
    expected = sum(e.edits for e in editors) * (len(editors) - 1)
    deadline = time.perf_counter() + 30
    while sum(e.received for e in editors) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    texts = {str(e.text) for e in editors}
    errors: dict[str, int] = {}
    for editor in editors:
        for code, count in editor.errors.items():
            errors[code] = errors.get(code, 0) + count
    for editor in editors:
        await editor.ws.close()
    for reader in readers:
        reader.cancel()
    latencies.sort()
    return {
        "edits": sum(e.edits for e in editors), "typed_secs": typed_secs, "expected": expected,
        "delivered": len(latencies), "converged": len(texts) == 1, "text": texts.pop() if len(texts) == 1 else None,
        "p50_ms": statistics.median(latencies) * 1000, "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "max_ms": latencies[-1] * 1000, "errors": errors,
    }


async def storage(database_url: str, session: str, final_text: str | None) -> dict:
    """Rows and bytes before and after compaction, read and compacted with the service's own store."""
    engine = database.create_engine(database_url)
    executors = Executors.create(1, 1)
    store = UpdateStore(database.session_factory(engine), executors)
    try:
        before = await store.size(session)
        started = time.perf_counter()
        after = await store.compact(session)
        compact_secs = time.perf_counter() - started
        doc = Doc()
        doc.apply_update(merge(await store.load(session)))
        intact = final_text is None or str(doc.get("prompt", type=Text)) == final_text
    finally:
        await engine.dispose()
        executors.shutdown()
    return {"before": before, "after": after, "compact_secs": compact_secs, "intact": intact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--editors", type=int, default=20)
    parser.add_argument("--rate", type=float, default=10.0, help="keystrokes per second per editor")
    parser.add_argument("--seconds", type=float, default=50.0, help="typing time (20 x 10/s x 50 s = 10,000 edits)")
    parser.add_argument("--services", action="store_true", help="MariaDB + Redis instead of SQLite + in-process")
    parser.add_argument("--deadline-secs", type=float, default=1800, help="give up (exit 2) after this long")
    args = parser.parse_args()
    guard.main(lambda: run(args), deadline_secs=args.deadline_secs)


def run(args: argparse.Namespace) -> None:
    data_dir = tempfile.mkdtemp()
    env = {"VA_DATA_DIR": data_dir, "VA_INFERENCE_ENABLED": "false", "VA_COLLAB_COMPACT_ROWS": "0"}
    if not args.services:
        measure(args, env, f"sqlite+aiosqlite:///{data_dir}/visionary.db")
        return
    with guard.scratch_database() as name:
        database_url = f"mysql+aiomysql://root@127.0.0.1:3306/{name}"
        env.update({"VA_DATABASE_URL": database_url, "VA_REDIS_URL": "redis://127.0.0.1:6379/0",
                    "VA_REDIS_PREFIX": f"va:bench:{name}:"})
        guard.run([sys.executable, "run.py", "--log-level", "warning", "migrate"], cwd=ROOT, env={**os.environ, **env})
        measure(args, env, database_url)


def measure(args: argparse.Namespace, env: dict[str, str], database_url: str) -> None:
    port = free_port()
    log_path = Path(env["VA_DATA_DIR"]) / "server.log"
    server = start_server(env, port, log_path)
    try:
        session, tokens = setup_session(f"http://127.0.0.1:{port}", args.editors)
        # Typing, then up to 30 s for the last deliveries, plus connecting: more than that is a hang.
        result = asyncio.run(asyncio.wait_for(run_editors(port, session, tokens, args.rate, args.seconds),
                                              args.seconds + 120))
    finally:
        guard.stop(server)
        problems = [line for line in log_path.read_text().splitlines() if "Traceback" in line or "ERROR" in line]
        if problems:
            print(f"  the server logged {len(problems)} errors; see {log_path}")
    sizes = asyncio.run(asyncio.wait_for(storage(database_url, session, result["text"]), 300))

    mode = "MariaDB + Redis hub" if args.services else "SQLite + in-process hub"
    print(f"== collab session, {mode}: {args.editors} editors x {args.rate:g} keystrokes/s for {args.seconds:g} s")
    print(f"  edits sent: {result['edits']} in {result['typed_secs']:.1f} s "
          f"({result['edits'] / result['typed_secs']:.0f}/s into one session)")
    print(f"  deliveries to other editors: {result['delivered']} of {result['expected']}; "
          f"documents converged: {result['converged']} ({len(result['text'] or '')} characters)")
    print(f"  error frames: {result['errors'] or 'none'}")
    print(f"  update delivery latency: p50 {result['p50_ms']:.1f} ms  p99 {result['p99_ms']:.1f} ms  "
          f"max {result['max_ms']:.1f} ms")
    before, after = sizes["before"], sizes["after"]
    print(f"  persisted after {result['edits']} edits: {before.rows} rows, {before.bytes:,} bytes")
    print(f"  after compaction: {after.rows} row, {after.bytes:,} bytes "
          f"({before.bytes / max(1, after.bytes):.1f}x smaller; compacted in {sizes['compact_secs']:.2f} s; "
          f"document intact: {sizes['intact']})")


if __name__ == "__main__":
    main()
