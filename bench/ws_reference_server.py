"""A minimal broadcast server on the `websockets` library, the reference for bench/ws_fanout.py.

Every connected client receives every message that any client sends, through
`websockets.broadcast()`. No authentication, no storage, no topics: the floor.

    python bench/ws_reference_server.py PORT
"""

from __future__ import annotations

import asyncio
import os
import sys

from websockets.asyncio.server import broadcast, serve

CLIENTS: set = set()


async def handler(websocket) -> None:
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.discard(websocket)


async def main(port: int) -> None:
    parent = os.getppid()
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None):
        # Serve while the benchmark that started it lives (were it killed, this would otherwise run on).
        while os.getppid() == parent:
            await asyncio.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
