"""A Yjs peer for tests: a pycrdt document synced over the real WebSocket in y-protocols bytes.

It does what the browser's provider does (sync step 1 on subscribing, answers the server's
step 1, sends each local change as an update, applies what arrives), so tests exercise the
same wire format; the merging is pycrdt's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pycrdt import Doc, Map, Text, merge_updates

from server.collab import protocol
from server.collab.protocol import Kind
from tests.support.client import ApiClient
from tests.support.ws import WsClient


class Peer:
    def __init__(self, ws: WsClient, session_id: str):
        self.ws = ws
        self.session = session_id
        self.topic = f"collab:{session_id}"
        self.doc = Doc()
        self.prompt = self.doc.get("prompt", type=Text)
        self.negative = self.doc.get("negative_prompt", type=Text)
        self.settings = self.doc.get("settings", type=Map)
        self.errors: list[dict[str, Any]] = []
        # Each local transaction's own update, as Yjs's doc.on('update') gives the browser.
        self._local: list[bytes] = []
        self._capturing = False
        self.doc.observe(lambda event: self._capturing and self._local.append(event.update))

    @classmethod
    async def join(cls, base_url: str, api: ApiClient, session_id: str) -> "Peer":
        peer = cls(await WsClient.connect(base_url, api=api), session_id)
        reply = await peer.ws.request("sub", topic=peer.topic)
        assert reply["type"] == "ack", reply
        await peer.sync()
        return peer

    async def sync(self) -> None:
        """Sync step 1 -> the server's step 2 (and its step 1, which we answer)."""
        await self.send(protocol.encode(Kind.SYNC_STEP1, self.doc.get_state()))
        await self.pump(lambda e: e.get("type") == "collab.sync" and protocol.parse(e["data"]).kind is Kind.SYNC_STEP2)

    async def send(self, data: bytes, **extra: Any) -> None:
        await self.ws.send("collab.update", session=self.session, data=data, **extra)

    async def edit(self, change, *, confirm: bool = False) -> bytes:
        """Apply ``change(peer)`` locally and send it as one update; returns the update.

        With ``confirm`` the frame carries a ref and this waits for the ack: the edit is stored."""
        self._capturing = True
        try:
            with self.doc.transaction():
                change(self)
        finally:
            self._capturing = False
        update = merge_updates(*self._local) if self._local else protocol.EMPTY_UPDATE
        self._local.clear()
        if confirm:
            reply = await self.ws.request("collab.update", session=self.session, data=protocol.encode(Kind.UPDATE, update))
            assert reply["type"] == "ack", reply
        else:
            await self.send(protocol.encode(Kind.UPDATE, update))
        return update

    def _handle(self, event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            self.errors.append(event)
            return
        if event.get("type") not in ("collab.sync", "collab.update") or event.get("session") != self.session:
            return
        message = protocol.parse(event["data"])
        if message.kind is Kind.SYNC_STEP1:
            reply = protocol.encode(Kind.SYNC_STEP2, self.doc.get_update(message.payload))
            asyncio.ensure_future(self.send(reply))
        elif message.edits and message.payload != protocol.EMPTY_UPDATE:
            self.doc.apply_update(message.payload)

    async def pump(self, until, timeout: float = 5.0) -> dict[str, Any]:
        """Apply incoming events until one matches ``until``; returns it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            event = await self.ws.wait_for(lambda e: True, max(0.01, remaining))
            self._handle(event)
            if until(event):
                return event

    async def settle(self, quiet: float = 0.3) -> None:
        """Apply everything that arrives until nothing has come for ``quiet`` seconds."""
        while True:
            try:
                event = await self.ws.wait_for(lambda e: True, quiet)
            except (AssertionError, asyncio.TimeoutError):
                return
            self._handle(event)

    async def wait_text(self, expected: str, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while str(self.prompt) != expected:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"prompt is {str(self.prompt)!r}, expected {expected!r}")
            try:
                self._handle(await self.ws.wait_for(lambda e: True, remaining))
            except (AssertionError, asyncio.TimeoutError):
                pass

    def close(self) -> None:
        self.ws.close()
