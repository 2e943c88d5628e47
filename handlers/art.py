"""Art studio over HTTP: the photo is the raw request body; the job is queued like any other."""

from __future__ import annotations

from handlers.base import APIHandler
from server.errors import UnsupportedMediaType


class ArtHandler(APIHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.art_max_upload_bytes

    async def post(self) -> None:
        """Turn a photo (raw image/* body, `?preset=fast|quality`) into four styles; 202 with the job."""
        user = self.require_user().user
        content_type = self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/"):
            raise UnsupportedMediaType(
                f"Send the photo itself as the body with an image/* Content-Type, not {content_type or 'nothing'}.")
        params = {"kind": "art", "preset": self.get_query_argument("preset", None)}
        job = await self.runtime.jobs.submit(user, params, self.body)
        self.write_json({"job": job}, status=202)


default_handlers = [
    (r"/api/art", ArtHandler),
]
