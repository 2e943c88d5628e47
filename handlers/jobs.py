"""Generation jobs over HTTP (the live events are on the WebSocket, topic job:<id>)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBytes, StrictStr

from handlers.base import APIHandler
from server.errors import InvalidInput
from server.ids import parse_id
from server.jobs import JobService
from server.moderation import require_moderator
from server.realtime import OpCall, op

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


class JobBody(BaseModel):
    """A job of any kind: its fields are checked per kind (server/jobs/kinds.py), which names the bad one."""

    model_config = ConfigDict(extra="allow")
    init_image: StrictStr | None = None  # base64, or a data: URL


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
        body = self.parse(JobBody)
        job = await self.jobs.submit(user, body.model_dump(exclude={"init_image"}), decode_init_image(body.init_image))
        self.write_json({"job": job}, status=202)

    async def get(self) -> None:
        """My jobs, newest first (`?mine=1`, `before`, `limit`)."""
        user = self.require_user().user
        limit = parse_id(self.get_query_argument("limit", "20"), "limit")
        jobs, cursor = await self.jobs.list_mine(user, before=self.get_query_argument("before", None), limit=limit)
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


class SubmitArgs(BaseModel):
    """The fields of `POST /api/jobs` (checked per kind by the job service), the init image as raw bytes."""

    model_config = ConfigDict(extra="allow")
    init_image: StrictBytes | None = None


class CancelArgs(BaseModel):
    job: StrictStr


@op("gen.submit", SubmitArgs)
async def gen_submit(call: OpCall[SubmitArgs]) -> dict[str, Any]:
    """Queue a job; the socket watches it from its first event."""
    fields = call.args.model_dump(exclude={"init_image"})
    job = await call.services.jobs.submit(call.user, fields, call.args.init_image)
    await call.socket.subscribe(f"job:{job['id']}", 0)
    return {"type": "ack", "job": job}


@op("gen.cancel", CancelArgs)
async def gen_cancel(call: OpCall[CancelArgs]) -> dict[str, Any]:
    return {"type": "ack", "job": await call.services.jobs.cancel(call.user, call.args.job)}


default_handlers = [
    (r"/api/jobs", JobsHandler),
    (r"/api/jobs/([0-9a-f]{1,32})", JobHandler),
    (r"/api/models/local", LocalModelsHandler),
    (r"/api/workers", WorkersHandler),
]
socket_ops = [gen_submit, gen_cancel]
