"""msgpack frames, encoded once per event and shared by every subscriber.

An event is packed without its ``topic`` and ``seq``; ``with_topic`` splices
those two keys into the packed map by rewriting only its header, so a process
never decodes and re-encodes an event to address it.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

FIXMAP_MAX = 15
FIXARRAY_MAX = 15


def encode(event: dict[str, Any]) -> bytes:
    return msgpack.packb(event, use_bin_type=True)


class BadFrame(ValueError):
    """The bytes are not one msgpack value (the only error `decode` raises)."""


def decode(frame: bytes) -> Any:
    """One msgpack value from a client's frame; raises BadFrame for anything else.

    msgpack bounds every length by the frame's size and its nesting by a fixed stack, so garbage
    costs no more than its bytes; it reports garbage as several ValueError subclasses.
    """
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as exc:
        raise BadFrame(f"The frame is not msgpack: {exc}") from None


def _map_header(size: int) -> bytes:
    if size <= FIXMAP_MAX:
        return bytes([0x80 | size])
    if size <= 0xFFFF:
        return b"\xde" + struct.pack(">H", size)
    return b"\xdf" + struct.pack(">I", size)


def _split_map(payload: bytes) -> tuple[int, bytes]:
    """The entry count of a packed map and the bytes of its entries."""
    first = payload[0]
    if 0x80 <= first <= 0x8F:
        return first & 0x0F, payload[1:]
    if first == 0xDE:
        return struct.unpack(">H", payload[1:3])[0], payload[3:]
    if first == 0xDF:
        return struct.unpack(">I", payload[1:5])[0], payload[5:]
    raise ValueError("payload is not a packed map")


def with_topic(payload: bytes, topic: str, seq: int | None) -> bytes:
    """The packed event with ``topic`` (and ``seq`` when sequenced) added."""
    count, entries = _split_map(payload)
    extra = msgpack.packb("topic") + msgpack.packb(topic)
    added = 1
    if seq is not None:
        extra += msgpack.packb("seq") + msgpack.packb(seq)
        added = 2
    return _map_header(count + added) + extra + entries


def array_frame(frames: list[bytes], count: int | None = None) -> bytes:
    """Several packed events as one msgpack array, by concatenation. ``count``: how many events the pieces
    hold, when some hold several (a run of events joined once for every socket); by default one each."""
    count = len(frames) if count is None else count
    if count <= FIXARRAY_MAX:
        header = bytes([0x90 | count])
    elif count <= 0xFFFF:
        header = b"\xdc" + struct.pack(">H", count)
    else:
        header = b"\xdd" + struct.pack(">I", count)
    return header + b"".join(frames)
