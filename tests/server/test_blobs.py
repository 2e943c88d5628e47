import hashlib
import os
import time

import pytest

from server.blobs import BlobStore


@pytest.fixture
def blobs(tmp_path):
    return BlobStore(tmp_path / "blobs")


def test_put_bytes_is_content_addressed(blobs):
    data = b"hello blobs" * 1000
    digest = blobs.put_bytes(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert blobs.path(digest).read_bytes() == data
    assert blobs.path(digest).parent.name == digest[2:4]


def test_identical_content_is_stored_once(blobs):
    first = blobs.put_bytes(b"same bytes")
    second = blobs.put_bytes(b"same bytes")
    assert first == second
    stored = [p for p in blobs.root.rglob("*") if p.is_file() and p.parent != blobs.temp_dir]
    assert len(stored) == 1
    assert list(blobs.temp_dir.iterdir()) == []


def test_aborted_writer_leaves_no_half_file(blobs):
    writer = blobs.writer()
    writer.write(b"partial upload")
    assert writer.temp_path.exists()
    writer.abort()
    assert not writer.temp_path.exists()
    assert [p for p in blobs.root.rglob("*") if p.is_file()] == []


def test_streaming_writer_hashes_on_the_way(blobs, tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    with source.open("rb") as f:
        digest = blobs.put_stream(f)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert blobs.exists(digest)


def test_path_refuses_anything_but_a_digest(blobs):
    for bad in ("../../etc/passwd", "ABC", "g" * 64, ""):
        with pytest.raises(ValueError):
            blobs.path(bad)


def test_sweep_removes_only_stale_temp_files(blobs):
    stale = blobs.writer()
    stale.write(b"x")
    fresh = blobs.writer()
    old = time.time() - 2 * 24 * 3600
    os.utime(stale.temp_path, (old, old))
    assert blobs.sweep_temp() == 1
    assert not stale.temp_path.exists() and fresh.temp_path.exists()
    fresh.abort()
