"""Art studio over HTTP: the photo is the raw request body; the results follow on job:<id>."""

from __future__ import annotations

from handlers.base import APIHandler
from server.art import ArtService
from server.errors import UnsupportedMediaType


class ArtHandler(APIHandler):
    @property
    def art(self) -> ArtService:
        return self.runtime.art

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
        job = await self.art.submit(user, self.body, self.get_query_argument("preset", None))
        self.write_json({"job": job}, status=202)


default_handlers = [
    (r"/api/art", ArtHandler),
]
