"""Stylize over HTTP: the photo is the raw request body (or a photo sent before); the job is queued like any other."""

from __future__ import annotations

from typing import Any

from handlers.base import APIHandler
from inference.requests import MAX_SEED
from server.ids import parse_id

TRUE = ("1", "true", "yes")


class StylizeHandler(APIHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.stylize_max_upload_bytes

    async def post(self) -> None:
        """Render a photo in a preset's style; 202 with the job, whose events follow on job:<id>.

        The photo is the body (image/*); or, with `?photo_of=<job id>` and no body, the photo of one of
        one's own stylize jobs (try another style: nothing is uploaded again).
        """
        user = self.require_user().user
        params: dict[str, Any] = {"kind": "stylize", "preset": self.get_query_argument("preset", None),
                                  "subject": self.get_query_argument("subject", None),
                                  "photo_of": self.get_query_argument("photo_of", None),
                                  "public": self.get_query_argument("public", "") in TRUE}
        seed = self.get_query_argument("seed", None)
        if seed:
            params["seed"] = parse_id(seed, "seed", maximum=MAX_SEED)
        if self.body:
            self.require_media_type({"image/*"}, "the photo itself as the body")
        params = {name: value for name, value in params.items() if value is not None}
        job = await self.runtime.jobs.submit(user, params, self.body or None)
        self.write_json({"job": job}, status=202)


default_handlers = [
    (r"/api/stylize", StylizeHandler),
]
