"""PUBLISHes to Redis sent together: the ones made while a round trip is under way go in the next pipeline.

A batch of chat messages is committed together and then published message by message; typing and
presence arrive many at once. One PUBLISH each cost a round trip and redis-py's per-command work (about
100 us of CPU), and concurrent ones went out on several pooled connections, so Redis could receive them
out of order (subscribers then backfilled the "missing" seqs from the database). Here they go out in the
order they were made, one pipeline at a time, as many as are waiting in each.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as redis


class PublishOutbox:
    def __init__(self, client: redis.Redis):
        self._redis = client
        self._waiting: list[tuple[str, bytes, asyncio.Future[None]]] = []
        self._sender: asyncio.Task | None = None

    async def publish(self, channel: str, data: bytes) -> None:
        """Returns once Redis took this message (and those before it); raises what the pipeline raised."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((channel, data, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="redis-hub-publisher")
        # Shielded: a publisher that goes away must not cancel the others' pipeline.
        await asyncio.shield(future)

    async def _send_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for channel, data, _ in batch:
                        pipe.publish(channel, data)
                    await pipe.execute()
            except Exception as exc:  # each publisher decides what a failure means for its message
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            try:
                await self._sender
            except asyncio.CancelledError:
                pass
