"""Content-addressed blob store: files named by their sha256 under the data directory.

A blob is written to a temporary file in the same file system, flushed with
fsync and renamed into place, so a reader never sees half a file and a crash
leaves at worst a stray temporary file (swept by ``sweep_temp``).
These methods block: call them through an executor.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
COPY_CHUNK_BYTES = 1024 * 1024
# A temporary file older than this belongs to a writer that died.
STALE_TEMP_SECS = 24 * 60 * 60


class BlobWriter:
    """Streams bytes to a temporary file, hashing them on the way (one pass, flat memory)."""

    def __init__(self, store: "BlobStore"):
        self._store = store
        fd, name = tempfile.mkstemp(dir=store.temp_dir, prefix="upload-")
        self._file: BinaryIO = os.fdopen(fd, "wb")
        self.temp_path = Path(name)
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._file.write(chunk)
        self._sha.update(chunk)
        self.size += len(chunk)

    def commit(self) -> str:
        """Move the bytes into the store; returns their sha256. Identical content is stored once."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._sha.hexdigest()
        self._store.adopt(self.temp_path, digest)
        return digest

    def abort(self) -> None:
        if not self._file.closed:
            self._file.close()
        self.temp_path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.temp_dir = self.root / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        """Where a blob lives: ``ab/cd/abcd…``, so no directory grows too large."""
        if not SHA256_RE.match(sha256):
            raise ValueError(f"`sha256` must be 64 lower-case hex digits but is {sha256!r}.")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def adopt(self, temp_path: Path, sha256: str) -> bool:
        """Move a complete, flushed temporary file whose sha256 is known into the store.

        Returns False when the content was already stored (the temporary file is then removed).
        """
        target = self.path(sha256)
        if target.exists():
            Path(temp_path).unlink(missing_ok=True)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)
        _fsync_dir(target.parent)
        return True

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        writer = self.writer()
        try:
            writer.write(data)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def put_stream(self, source: BinaryIO) -> str:
        writer = self.writer()
        try:
            while chunk := source.read(COPY_CHUNK_BYTES):
                writer.write(chunk)
            return writer.commit()
        except BaseException:
            writer.abort()
            raise

    def read_bytes(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def sweep_temp(self, older_than_secs: float = STALE_TEMP_SECS) -> int:
        """Delete temporary files abandoned by dead writers; returns how many."""
        cutoff = time.time() - older_than_secs
        removed = 0
        for entry in self.temp_dir.iterdir():
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
