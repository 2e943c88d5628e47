"""Uploads: a single streaming PUT (scripts, `curl -T`) and tus 1.0.0 resumable uploads (the browser).

Either way the bytes go to a temporary file beside the blob store, hashed with sha256 as
they are written (no second pass, memory bounded by one buffer). When the last byte is
in, the file is checked as safetensors; a bad file is deleted and the reason returned,
a good one is moved into the blob store (stored once however often it is uploaded) and
attached to its version. A tus upload's bytes-so-far are its temporary file, so a
dropped connection loses nothing; uploads not finished in time expire and are swept.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import fcntl
import hashlib
import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.blobs import BlobStore
from server.errors import AppError, Conflict, InvalidInput, NotFound, PayloadTooLarge
from server.executors import Executors
from server.ids import parse_id
from server.modelhub.catalog import Catalog
from server.modelhub.errors import UploadOffsetMismatch
from server.modelhub.safetensors_check import check_file, refuse_by_name
from server.modelhub.schemas import clean_filename
from server.store.hub_tables import HubUpload, HubVersion
from server.store.models import User, utcnow

log = logging.getLogger(__name__)

# Chunks from the socket (64 KiB) are gathered to this size before one executor hop writes and hashes them.
WRITE_BUFFER_BYTES = 4 * 1024 * 1024
REHASH_CHUNK_BYTES = 8 * 1024 * 1024
# An upload's bytes are handed to the disk in steps of this size while the rest arrives (see _Sink).
WRITEBACK_STEP_BYTES = 64 * 1024 * 1024
TUS_TEMP_PREFIX = "tus-"
# A PUT cannot be resumed, so its temporary file is worth nothing once its request is gone. While the
# request lives, its process holds an flock on the file (released by the kernel when a process dies);
# an unlocked `put-*` file is therefore a leftover, swept at start-up whichever process wrote it.
PUT_TEMP_PREFIX = "put-"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}


class ChecksumMismatch(AppError):
    code = "checksum_mismatch"
    status = 460  # tus checksum extension


class UploadBusy(AppError):
    code = "upload_busy"
    status = 423


def checked_filename(filename: str) -> str:
    """The file name, or InvalidInput saying what is wrong with it; pickle and other types are refused."""
    try:
        name = clean_filename(filename)
    except ValueError as exc:
        raise InvalidInput(f"Bad file name: {exc}.", code="invalid_filename") from None
    refuse_by_name(name)
    return name


class _Sink:
    """Appends to a file and hashes what it appends. Its methods block: call them in an executor.

    Every WRITEBACK_STEP_BYTES the bytes written so far are handed to the disk (POSIX_FADV_DONTNEED starts
    their writeback without waiting, and drops them from the page cache once clean), so the disk writes while
    the rest arrives and is hashed: the one fsync at the end waits for the last step, not for the whole file,
    and a multi-GiB upload does not push everything else out of the page cache."""

    def __init__(self, path: Path, hasher: Any, mode: str) -> None:
        self.path = path
        self.hasher = hasher
        self.file = open(path, mode, buffering=0)  # chunks are large: no copy through a userspace buffer
        self._handed = self.file.seek(0, os.SEEK_END)  # bytes before this have been given to the disk

    def write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            view = memoryview(chunk)
            while view:  # a raw write may take less than asked for
                view = view[self.file.write(view):]
        written = self.file.tell()
        if written - self._handed >= WRITEBACK_STEP_BYTES:
            os.posix_fadvise(self.file.fileno(), self._handed, written - self._handed, os.POSIX_FADV_DONTNEED)
            self._handed = written

    def hash(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self.hasher.update(chunk)

    def close(self) -> None:
        if not self.file.closed:
            os.fsync(self.file.fileno())
            self.file.close()


class StreamIn:
    """One request body streaming into a sink, never past `limit` bytes.

    Socket chunks are gathered into buffers of WRITE_BUFFER_BYTES; a full buffer is written and hashed in
    the io pool while the next one fills (two buffers at most in memory), so reading the socket and
    hashing overlap.
    """

    def __init__(self, executors: Executors, sink: _Sink, limit: int, extra: Any = None) -> None:
        self._executors = executors
        self._sink = sink
        self._limit = limit
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._pending: asyncio.Future | None = None
        self.received = 0
        self.extra = extra  # a per-request checksum, fed the same bytes
        self._lock = asyncio.Lock()

    async def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self._limit:
            raise PayloadTooLarge(f"The upload is larger than the {self._limit:,} bytes allowed.")
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= WRITE_BUFFER_BYTES:
            async with self._lock:
                await self._settle()
                self._pending = asyncio.ensure_future(self._store(self._take()))

    async def drain(self) -> None:
        """Write everything received so far."""
        async with self._lock:
            await self._settle()
            chunks = self._take()
            if chunks:
                await self._store(chunks)

    async def _settle(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def _take(self) -> list[bytes]:
        chunks, self._buffer, self._buffered = self._buffer, [], 0
        return chunks

    async def _store(self, chunks: list[bytes]) -> None:
        # Writing and hashing both release the GIL: two threads do them side by side.
        await asyncio.gather(self._executors.run_io(self._sink.write, chunks),
                             self._executors.run_io(self._hash, chunks))

    def _hash(self, chunks: list[bytes]) -> None:
        self._sink.hash(chunks)
        if self.extra is not None:
            for chunk in chunks:
                self.extra.update(chunk)

    @property
    def hasher(self) -> Any:
        return self._sink.hasher

    async def close(self) -> None:
        await self.drain()
        await self._executors.run_io(self._sink.close)


def claim_put_temp(temp_dir: Path) -> tuple[Path, int]:
    """A new empty `put-*` file and a descriptor holding its flock. Blocks: call it in an executor.

    Created under a hidden name and renamed once locked, so a sweep never sees it unlocked.
    """
    name = uuid.uuid4().hex
    hidden = temp_dir / f".{PUT_TEMP_PREFIX}{name}"
    lock_fd = os.open(hidden, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    path = temp_dir / f"{PUT_TEMP_PREFIX}{name}"
    os.rename(hidden, path)
    return path, lock_fd


def sweep_abandoned_puts(temp_dir: Path) -> int:
    """Delete `put-*` files no live request holds (their process died mid-upload); returns how many."""
    removed = 0
    for path in temp_dir.glob(f"{PUT_TEMP_PREFIX}*"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # published or aborted meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live upload, in this process or another
        else:
            path.unlink(missing_ok=True)
            removed += 1
        finally:
            os.close(fd)
    return removed


@dataclass
class PutUpload:
    """A single-request upload in progress; ``lock_fd`` keeps its file from the start-up sweep until it is done."""

    service: "UploadService"
    version: HubVersion
    filename: str
    stream: StreamIn
    temp_path: Path
    hasher: Any
    lock_fd: int

    async def write(self, chunk: bytes) -> None:
        await self.stream.write(chunk)

    async def finish(self) -> dict[str, Any]:
        """Validate and publish the file; deletes it and raises on any problem."""
        try:
            await self.stream.close()
            return await self.service.publish(self.version, self.filename, self.temp_path, self.hasher.hexdigest())
        finally:
            os.close(self.lock_fd)

    async def abort(self) -> None:
        try:
            await self.stream.close()
        finally:
            self.temp_path.unlink(missing_ok=True)
            os.close(self.lock_fd)


@dataclass
class TusAppend:
    """One PATCH of a tus upload: the bytes from `start` on."""

    service: "UploadService"
    upload: HubUpload
    start: int
    stream: StreamIn
    checksum: tuple[str, bytes] | None
    saved_hasher: Any

    async def write(self, chunk: bytes) -> None:
        await self.stream.write(chunk)

    async def finish(self) -> tuple[int, dict[str, Any] | None]:
        """Flush this PATCH; returns the new offset and, when the upload is complete, the published file."""
        return await self.service.end_append(self, complete_request=True)

    async def interrupted(self) -> None:
        """The connection dropped: keep what arrived, so the client can resume from there."""
        await self.service.end_append(self, complete_request=False)


class UploadService:
    def __init__(self, db: async_sessionmaker[AsyncSession], blobs: BlobStore, executors: Executors,
                 catalog: Catalog, max_file_bytes: int, expiry_secs: int) -> None:
        self._db = db
        self._blobs = blobs
        self._executors = executors
        self._catalog = catalog
        self.max_file_bytes = max_file_bytes
        self.expiry_secs = expiry_secs
        # Per tus upload in this process: the running sha256 and how many bytes it has seen; used while that
        # count matches the file, else the file is hashed again (another process wrote the earlier bytes).
        self._hashers: dict[str, tuple[Any, int]] = {}
        self._busy: set[str] = set()

    # -- PUT ------------------------------------------------------------------------------------

    async def begin_put(self, user: User, version_id: int, filename: str, length: int | None) -> PutUpload:
        """Start a single-request upload of `filename` into a version the user owns."""
        name = checked_filename(filename)
        if length is not None and length > self.max_file_bytes:
            raise PayloadTooLarge(f"The file is {length:,} bytes; at most {self.max_file_bytes:,} are accepted.")
        version = await self._catalog.writable_version(user, version_id, name)
        temp, lock_fd = await self._executors.run_io(claim_put_temp, self._blobs.temp_dir)
        hasher = hashlib.sha256()
        try:
            sink = await self._executors.run_io(_Sink, temp, hasher, "wb")
        except BaseException:
            os.close(lock_fd)
            raise
        return PutUpload(self, version, name, StreamIn(self._executors, sink, self.max_file_bytes), temp, hasher,
                         lock_fd)

    async def sweep_abandoned_puts(self) -> int:
        """Delete the temporary files of PUTs whose process died mid-upload."""
        return await self._executors.run_io(sweep_abandoned_puts, self._blobs.temp_dir)

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, version: HubVersion, filename: str, temp_path: Path, sha256: str) -> dict[str, Any]:
        """Check a complete temporary file, move it into the blob store and attach it to the version."""
        try:
            checked = await self._executors.run_io(check_file, temp_path)
        except BaseException:
            await self._executors.run_io(lambda: temp_path.unlink(missing_ok=True))
            raise
        await self._executors.run_io(self._blobs.adopt, temp_path, sha256)
        return await self._catalog.attach_file(version, filename, sha256, checked)

    # -- tus ------------------------------------------------------------------------------------

    async def create(self, user: User, length: int, metadata: dict[str, str]) -> HubUpload:
        """tus creation: an empty upload of `length` bytes for metadata `filename` and `version_id`."""
        name = checked_filename(metadata.get("filename", ""))
        version_id = parse_id(metadata.get("version_id"), "version_id")
        if length > self.max_file_bytes:
            raise PayloadTooLarge(f"The file is {length:,} bytes; at most {self.max_file_bytes:,} are accepted.")
        if length < 8:
            raise InvalidInput("A .safetensors file is at least 8 bytes long.", code="empty_file")
        version = await self._catalog.writable_version(user, version_id, name)
        upload = HubUpload(id=uuid.uuid4().hex, owner_id=user.id, version_id=version.id, filename=name,
                           length=length, received=0,
                           expires_at=utcnow() + dt.timedelta(seconds=self.expiry_secs))
        await self._executors.run_io(self._temp(upload.id).touch)
        async with self._db() as db:
            db.add(upload)
            await db.commit()
        self._hashers[upload.id] = (hashlib.sha256(), 0)
        return upload

    async def status(self, user: User, upload_id: str) -> tuple[HubUpload, int]:
        """An upload and how many bytes of it the server holds (what a client resumes from)."""
        upload = await self._get(user, upload_id)
        return upload, await self._offset(upload.id)

    async def begin_append(self, user: User, upload_id: str, offset: int,
                           checksum: tuple[str, bytes] | None, body_length: int | None = None) -> TusAppend:
        """A PATCH starting at `offset`, which must be where the upload stands."""
        upload = await self._get(user, upload_id)
        if body_length is not None and offset + body_length > upload.length:
            raise PayloadTooLarge(f"This PATCH would end at byte {offset + body_length:,}, past the declared "
                                  f"Upload-Length of {upload.length:,}.")
        if upload_id in self._busy:
            raise UploadBusy("Another request is writing to this upload; retry once it has finished.")
        self._busy.add(upload_id)
        try:
            current = await self._offset(upload_id)
            if offset != current:
                raise UploadOffsetMismatch(f"Upload-Offset is {offset} but the server holds {current} bytes.")
            hasher, hashed = self._hashers.get(upload_id, (None, -1))
            if hasher is None or hashed != current:
                # Another process took the earlier bytes (or this one restarted): hash them once here.
                hasher = await self._executors.run_io(self._rehash, self._temp(upload_id))
            sink = await self._executors.run_io(_Sink, self._temp(upload_id), hasher, "ab")
            extra = CHECKSUM_ALGORITHMS[checksum[0]]() if checksum else None
            stream = StreamIn(self._executors, sink, upload.length - current, extra)
            return TusAppend(self, upload, current, stream, checksum, hasher.copy())
        except BaseException:
            self._busy.discard(upload_id)
            raise

    async def end_append(self, append: TusAppend, *, complete_request: bool) -> tuple[int, dict[str, Any] | None]:
        upload_id = append.upload.id
        try:
            await append.stream.close()
            offset = append.start + append.stream.received
            if complete_request and append.checksum is not None:
                algorithm, expected = append.checksum
                if append.stream.extra.digest() != expected:
                    await self._executors.run_io(os.truncate, self._temp(upload_id), append.start)
                    self._hashers[upload_id] = (append.saved_hasher, append.start)
                    raise ChecksumMismatch(f"The {algorithm} of this PATCH does not match Upload-Checksum; "
                                           "its bytes were discarded, resend them.")
            async with self._db() as db:
                row = await db.get(HubUpload, upload_id)
                if row is not None:
                    row.received = offset
                    await db.commit()
            self._hashers[upload_id] = (append.stream.hasher, offset)
            if offset < append.upload.length or not complete_request:
                return offset, None
            hasher, _ = self._hashers.pop(upload_id)
            temp = self._temp(upload_id)
            try:
                version = await self._version(append.upload.version_id)
                file = await self.publish(version, append.upload.filename, temp, hasher.hexdigest())
            except BaseException:
                await self._executors.run_io(lambda: temp.unlink(missing_ok=True))
                raise
            finally:
                await self._delete_row(upload_id)
            return offset, file
        finally:
            self._busy.discard(upload_id)

    async def terminate(self, user: User, upload_id: str) -> None:
        """tus termination: forget the upload and delete its bytes."""
        await self._get(user, upload_id)
        if upload_id in self._busy:
            raise UploadBusy("The upload is being written; stop that request first.")
        await self._discard(upload_id)

    async def expire(self, now: dt.datetime | None = None) -> int:
        """Delete uploads past their expiry and their bytes; returns how many."""
        async with self._db() as db:
            ids = list(await db.scalars(select(HubUpload.id).where(HubUpload.expires_at < (now or utcnow()))))
        for upload_id in ids:
            if upload_id not in self._busy:
                await self._discard(upload_id)
        return len(ids)

    # -- internals ------------------------------------------------------------------------------

    def _temp(self, upload_id: str) -> Path:
        return self._blobs.temp_dir / f"{TUS_TEMP_PREFIX}{upload_id}"

    async def _offset(self, upload_id: str) -> int:
        path = self._temp(upload_id)
        try:
            return (await self._executors.run_io(path.stat)).st_size
        except FileNotFoundError:
            raise NotFound("The upload's bytes are gone (expired); start again.", code="upload_expired") from None

    async def _get(self, user: User, upload_id: str) -> HubUpload:
        async with self._db() as db:
            upload = await db.get(HubUpload, upload_id)
        if upload is None or upload.owner_id != user.id:
            raise NotFound("There is no such upload (finished, expired or not yours).", code="upload_not_found")
        if upload.expires_at < utcnow():
            await self._discard(upload_id)
            raise NotFound("The upload expired; start again.", code="upload_expired")
        return upload

    async def _version(self, version_id: int) -> HubVersion:
        async with self._db() as db:
            version = await db.get(HubVersion, version_id)
        if version is None:
            raise Conflict("The model version was deleted while the file was uploading.", code="version_gone")
        return version

    async def _discard(self, upload_id: str) -> None:
        self._hashers.pop(upload_id, None)
        await self._executors.run_io(lambda: self._temp(upload_id).unlink(missing_ok=True))
        await self._delete_row(upload_id)

    async def _delete_row(self, upload_id: str) -> None:
        async with self._db() as db:
            await db.execute(delete(HubUpload).where(HubUpload.id == upload_id))
            await db.commit()

    @staticmethod
    def _rehash(path: Path) -> Any:
        hasher = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(REHASH_CHUNK_BYTES):
                hasher.update(chunk)
        return hasher


def parse_tus_metadata(header: str) -> dict[str, str]:
    """`Upload-Metadata: key base64value,key2 base64value2` -> {key: value}."""
    result: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in header.split(","))):
        key, _, encoded = pair.partition(" ")
        try:
            result[key] = base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput(f"Upload-Metadata `{key[:40]}` is not base64 of UTF-8 text.") from None
    return result


def parse_tus_checksum(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    algorithm, _, encoded = header.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise InvalidInput(f"Upload-Checksum algorithm {algorithm[:20]!r} is not one of "
                           f"{', '.join(CHECKSUM_ALGORITHMS)}.", code="checksum_algorithm")
    try:
        return algorithm, base64.b64decode(encoded, validate=True)
    except ValueError:
        raise InvalidInput("Upload-Checksum is not base64.") from None
