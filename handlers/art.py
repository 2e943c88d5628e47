"""Art studio over HTTP: the photo is the raw request body; the job is queued like any other."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, StrictBytes, StrictStr

from handlers.base import APIHandler
from server.realtime import OpCall, op


class ArtHandler(APIHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.art_max_upload_bytes

    async def post(self) -> None:
        """Turn a photo (raw image/* body, `?preset=fast|quality`) into four styles; 202 with the job."""
        user = self.require_user().user
        self.require_media_type({"image/*"}, "the photo itself as the body")
        params = {"kind": "art", "preset": self.get_query_argument("preset", None)}
        job = await self.runtime.jobs.submit(user, params, self.body)
        self.write_json({"job": job}, status=202)


class ArtArgs(BaseModel):
    image: StrictBytes  # raw bytes (msgpack bin); photos over the 64 KiB frame go through POST /api/art
    preset: StrictStr | None = None


@op("art.submit", ArtArgs)
async def art_submit(call: OpCall[ArtArgs]) -> dict[str, Any]:
    """Queue an art job for a small photo; the socket watches it from its first event."""
    job = await call.services.jobs.submit(call.user, {"kind": "art", "preset": call.args.preset}, call.args.image)
    await call.socket.subscribe(f"job:{job['id']}", 0)
    return {"type": "ack", "job": job}


default_handlers = [
    (r"/api/art", ArtHandler),
]
socket_ops = [art_submit]
