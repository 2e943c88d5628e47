"""The upload sink: bytes written whole (raw writes), handed to the disk in steps, appended after a resume."""

from __future__ import annotations

import hashlib
import os

from server.modelhub import uploads


def test_the_sink_writes_every_byte_in_steps_and_appends_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(uploads, "WRITEBACK_STEP_BYTES", 1000)  # small steps, so several are taken here
    path = tmp_path / "upload"
    chunks = [os.urandom(n) for n in (1, 700, 999, 4096, 65_536, 3)]
    sink = uploads._Sink(path, hashlib.sha256(), "wb")
    sink.write(chunks[:3])
    sink.write(chunks[3:5])
    assert sink._handed == sum(map(len, chunks[:5])), "the bytes written were not handed to the disk"
    sink.close()
    resumed = uploads._Sink(path, hashlib.sha256(), "ab")  # a tus PATCH after a dropped connection
    assert resumed._handed == sum(map(len, chunks[:5]))
    resumed.write(chunks[5:])
    resumed.close()
    assert path.read_bytes() == b"".join(chunks)
