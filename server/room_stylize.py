"""`/stylize <style> [subject]` with an attached photo, in rooms whose owner allows uploads.

The photo goes first, over HTTP (`upload`): checked from its header as any stylize photo, stored as a
blob, and remembered for its uploader for a while under its sha256, which is the reference the chat
message then carries (`chat.send` with `photo`). The command (`ChatService.photo_commands`) starts a
public stylize job of the sender from it; the message shows the job as `/imagine`'s does. A reference
is only good for the one who uploaded it, so a hash seen elsewhere starts nothing.
"""

from __future__ import annotations

from typing import Any

from server.blobs import SHA256_RE, BlobStore
from server.cache import Cache
from server.chat import ChatService
from server.errors import Forbidden, InvalidInput
from server.executors import Executors
from server.jobs import JobService
from server.jobs.stylize import StylizeParser
from server.ratelimit import RateLimiter
from server.room_imagine import RoomImagine
from server.store.models import User

COMMAND = "stylize"
# How long an uploaded photo waits for its `/stylize`: long enough to pick a style and type a subject.
PHOTO_KEPT_SECS = 60 * 60
# Uploads per person and window: each is up to `stylize_max_upload_bytes` on disk, kept as a job's input.
UPLOAD_LIMIT = 30
UPLOAD_WINDOW_SECS = 10 * 60


def _photo_key(user_id: int, sha256: str) -> str:
    return f"room-photo:{user_id}:{sha256}"


class RoomStylize:
    def __init__(self, chat: ChatService, rooms: RoomImagine, jobs: JobService, photos: StylizeParser,
                 blobs: BlobStore, executors: Executors, cache: Cache, limiter: RateLimiter):
        self._chat = chat
        self._rooms = rooms
        self._jobs = jobs
        self._photos = photos
        self._blobs = blobs
        self._executors = executors
        self._cache = cache
        self._limiter = limiter

    def wire(self) -> None:
        """Register `/stylize` (a command that takes a photo) with the chat service."""
        self._chat.photo_commands[COMMAND] = self.stylize

    async def upload(self, user: User, room: str, photo: bytes | None) -> dict[str, Any]:
        """Check and keep a photo for a `/stylize` in ``room``; its reference (sha256) and upright size."""
        await self._chat.check_access(user, room)
        await self._rooms.require_enabled(room, uploads=True)
        await self._limiter.require(f"room-photo:{user.id}", UPLOAD_LIMIT, UPLOAD_WINDOW_SECS,
                                    "You are uploading photos too fast")
        width, height = await self._photos.check_photo(photo)
        digest = await self._executors.run_io(self._blobs.put_bytes, bytes(photo))
        await self._cache.set(_photo_key(user.id, digest), b"1", PHOTO_KEPT_SECS)
        return {"id": digest, "width": width, "height": height}

    async def stylize(self, author: User, room: str, words: str, photo: str | None) -> str:
        """Start the public stylize job a `/stylize <style> [subject]` asks for, from the sender's photo; its id."""
        style, _, subject = words.partition(" ")
        if not style:
            raise InvalidInput("Name a style: /stylize <style> [what the photo shows], with a photo attached.",
                               code="invalid_preset", data={"field": "text"})
        await self._rooms.require_enabled(room, uploads=True)
        if photo is None:
            raise InvalidInput("Attach a photo to stylize (the picture button beside the message box).",
                               code="not_an_image", data={"field": "photo"})
        data = await self._uploaded(author, photo)
        job = await self._jobs.submit(author, {"kind": "stylize", "preset": style, "subject": subject.strip(),
                                               "public": True}, data)
        return job["id"]

    async def _uploaded(self, author: User, photo: Any) -> bytes:
        """The bytes of a photo the author uploaded lately, or a clear error (not theirs, or too old)."""
        if not isinstance(photo, str) or not SHA256_RE.match(photo) or \
                await self._cache.get(_photo_key(author.id, photo)) is None:
            raise InvalidInput("That photo is not one you attached in the last hour; attach it again.",
                               code="unknown_photo", data={"field": "photo"})
        try:
            return await self._executors.run_io(self._blobs.read_bytes, photo)
        except FileNotFoundError:
            raise InvalidInput("That photo is gone; attach it again.", code="unknown_photo",
                               data={"field": "photo"}) from None
