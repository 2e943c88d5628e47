"""Live: the public renders in progress (the pictures come over the socket on `live:all`)."""

from __future__ import annotations

from handlers.base import APIHandler


class LiveHandler(APIHandler):
    async def get(self) -> None:
        """Public renders running now, how many public jobs wait, and the newest finished ones."""
        self.write_json(await self.runtime.live.snapshot(self.principal))


default_handlers = [
    (r"/api/live", LiveHandler),
]
