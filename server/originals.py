"""The photo a stylize job was made from, as its owner may choose to show it beside the result.

Never the upload itself: a phone photo carries EXIF (GPS position, device) and may be 12 MP.
What is shown is an upright WebP copy, at most ORIGINAL_SIDE_PX on its long side, without
metadata, made once when the owner chooses to show it (in the CPU pool; the upload's header
was checked when the job was submitted, and JPEGs decode at a reduced DCT scale).
"""

from __future__ import annotations

from server.blobs import BlobStore
from server.errors import InvalidInput
from server.executors import Executors
from server.images import make_display_copy
from server.jobs.kinds import STYLIZE_KIND
from server.store.models import GenerationJob

ORIGINAL_SIDE_PX = 1280


class Originals:
    def __init__(self, blobs: BlobStore, executors: Executors):
        self._blobs = blobs
        self._executors = executors

    async def public_copy(self, job: GenerationJob) -> str:
        """Store the shown copy of a stylize job's photo; its sha256."""
        if job.kind != STYLIZE_KIND or not job.init_image_sha256:
            raise InvalidInput("Only a stylized photo has an original to show.", code="no_original")
        data = await self._executors.run_io(self._blobs.read_bytes, job.init_image_sha256)
        copy, _width, _height = await self._executors.run_cpu(make_display_copy, data, ORIGINAL_SIDE_PX)
        return await self._executors.run_io(self._blobs.put_bytes, copy)

    async def read(self, sha256: str) -> bytes:
        return await self._executors.run_io(self._blobs.read_bytes, sha256)
