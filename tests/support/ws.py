"""A WebSocket test client speaking the msgpack protocol over a real connection."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import msgpack
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tests.support.client import ApiClient


class WsClient:
    def __init__(self, conn: WebSocketClientConnection):
        self.conn = conn
        self.events: list[dict[str, Any]] = []  # everything received, in order
        self._cursor = 0

    @classmethod
    async def connect(cls, base_url: str, *, api: ApiClient | None = None, token: str | None = None,
                      origin: str | None = None) -> "WsClient":
        url = base_url.replace("http://", "ws://") + "/ws" + (f"?token={token}" if token else "")
        headers = {"Origin": origin or base_url}
        if api is not None and api.http.cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in api.http.cookies.items())
        conn = await websocket_connect(HTTPRequest(url, headers=headers), max_message_size=64 * 1024 * 1024)
        return cls(conn)

    async def send(self, op: str, **fields: Any) -> None:
        await self.conn.write_message(msgpack.packb({"op": op, **fields}, use_bin_type=True), binary=True)

    async def send_raw(self, data: bytes | str, binary: bool = True) -> None:
        await self.conn.write_message(data, binary=binary)

    async def _read_more(self, timeout: float) -> bool:
        frame = await asyncio.wait_for(self.conn.read_message(), timeout)
        if frame is None:
            return False
        decoded = msgpack.unpackb(frame, raw=False)
        self.events.extend(decoded if isinstance(decoded, list) else [decoded])
        return True

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        """The next unseen event that matches (earlier unmatched ones stay unseen)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for index in range(self._cursor, len(self.events)):
                if match(self.events[index]):
                    event = self.events.pop(index)
                    return event
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or not await self._read_more(remaining):
                raise AssertionError(f"no matching event; got {self.events[self._cursor:]!r}")

    async def wait_type(self, type_: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        return await self.wait_for(
            lambda e: e.get("type") == type_ and all(e.get(k) == v for k, v in fields.items()), timeout)

    async def collect(self, type_: str, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        return [await self.wait_type(type_, timeout) for _ in range(count)]

    async def request(self, op: str, timeout: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Send an op with a fresh ref and return its ack or error."""
        ref = f"r{id(fields)}-{len(self.events)}-{asyncio.get_running_loop().time()}"
        await self.send(op, ref=ref, **fields)
        return await self.wait_for(lambda e: e.get("ref") == ref and e.get("type") in ("ack", "error", "pong"),
                                   timeout)

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait for the server to close; returns the close code."""
        deadline = asyncio.get_running_loop().time() + timeout
        while await self._read_more(max(0.01, deadline - asyncio.get_running_loop().time())):
            pass
        return self.conn.close_code

    def close(self) -> None:
        self.conn.close()
