"""A bare Tornado JSON handler, the reference for bench/http_api.py.

`GET /api/me` answers a fixed JSON body the size of ours: no auth, no database, no middleware:
the floor a Tornado process on this machine reaches.

    python bench/http_reference_server.py PORT
"""

from __future__ import annotations

import asyncio
import os
import sys

import tornado.web

BODY = {"user": {"id": 1, "username": "bench0000000", "display_name": "bench0000000", "avatar_url": None,
                 "created_at": "2026-01-01T00:00:00Z", "is_admin": False}}


class MeHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(BODY)


class HealthHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("ok")


async def main(port: int) -> None:
    app = tornado.web.Application([(r"/api/me", MeHandler), (r"/healthz", HealthHandler)])
    app.listen(port, "127.0.0.1", xheaders=True)
    parent = os.getppid()
    # Serve while the benchmark that started it lives (were it killed, this would otherwise run on).
    while os.getppid() == parent:
        await asyncio.sleep(1.0)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
