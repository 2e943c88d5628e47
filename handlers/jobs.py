"""Generation jobs over HTTP (the live events are on the WebSocket, topic job:<id>)."""

from __future__ import annotations

import base64
import binascii

from handlers.base import APIHandler
from server.errors import InvalidInput
from server.jobs import JobService
from server.moderation import require_moderator

MiB = 1024 * 1024


def decode_init_image(value: object) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput("`init_image` must be a base64 string.")
    try:
        return base64.b64decode(value.split(",", 1)[-1], validate=True)  # also accepts a data: URL
    except (binascii.Error, ValueError):
        raise InvalidInput("`init_image` is not valid base64.", code="invalid_image") from None


class JobsHandler(APIHandler):
    @property
    def jobs(self) -> JobService:
        return self.runtime.jobs

    @property
    def body_limit(self) -> int:
        # Base64 makes an init image a third larger, plus the other fields.
        return self.runtime.settings.max_init_image_bytes * 4 // 3 + MiB

    async def post(self) -> None:
        """Queue a generation job; 202 with the job, whose events follow on job:<id>."""
        user = self.require_user().user
        body = self.json_body()
        job = await self.jobs.submit(user, body, decode_init_image(body.get("init_image")))
        self.write_json({"job": job}, status=202)

    async def get(self) -> None:
        """My jobs, newest first (`?mine=1`, `before`, `limit`)."""
        user = self.require_user().user
        limit = self.get_query_argument("limit", "20")
        if not (limit.isascii() and limit.isdigit()) or len(limit) > 4:
            raise InvalidInput("`limit` must be a positive integer.")
        jobs, cursor = await self.jobs.list_mine(user, before=self.get_query_argument("before", None),
                                                 limit=int(limit))
        self.write_json({"jobs": jobs, "next_cursor": cursor})


class JobHandler(APIHandler):
    async def get(self, job_id: str) -> None:
        """One job: its status, settings, timings and images."""
        self.write_json({"job": await self.runtime.jobs.get(self.principal, job_id)})

    async def delete(self, job_id: str) -> None:
        """Cancel a queued or running job."""
        user = self.require_user().user
        self.write_json({"job": await self.runtime.jobs.cancel(user, job_id)})


class LocalModelsHandler(APIHandler):
    async def get(self) -> None:
        """The models the workers can load, the samplers and the request limits."""
        self.write_json(await self.runtime.jobs.catalogue())


class WorkersHandler(APIHandler):
    async def get(self) -> None:
        """The workers that heartbeat now (moderators): devices, loaded models, running jobs."""
        require_moderator(self.require_user().user)
        self.write_json({"workers": await self.runtime.jobs.workers()})


default_handlers = [
    (r"/api/jobs", JobsHandler),
    (r"/api/jobs/([0-9a-f]{1,32})", JobHandler),
    (r"/api/models/local", LocalModelsHandler),
    (r"/api/workers", WorkersHandler),
]
