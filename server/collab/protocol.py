"""The y-protocols wire format (sync step 1/2, update, awareness), parsed strictly.

These are the bytes that the browser's stock ``y-protocols`` encoders write, carried
inside ``collab.update`` / ``collab.sync`` frames. Parsing refuses anything that is not
exactly one well-formed message (trailing bytes included), before it reaches the CRDT.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import Any
from enum import Enum

from pycrdt import YMessageType, YSyncMessageType, write_var_uint

# A lib0 varUint of more than 5 bytes exceeds 32 bits: no length or type in this protocol is that large.
MAX_VAR_UINT_BYTES = 5
# A cursor and a name and colour fit in a few hundred bytes; anything bigger is fanned out to every member.
MAX_AWARENESS_STATE_BYTES = 2048
EMPTY_UPDATE = b"\x00\x00"  # a Yjs update with no structs and an empty delete set


class Kind(Enum):
    SYNC_STEP1 = "sync_step1"
    SYNC_STEP2 = "sync_step2"
    UPDATE = "update"
    AWARENESS = "awareness"


@dataclass(frozen=True)
class Message:
    kind: Kind
    payload: bytes  # a state vector (step 1), a Yjs update (step 2, update) or an awareness update

    @property
    def edits(self) -> bool:
        """Whether applying it may change the document."""
        return self.kind in (Kind.SYNC_STEP2, Kind.UPDATE)


class MalformedMessage(ValueError):
    pass


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def var_uint(self) -> int:
        value, shift = 0, 0
        for _ in range(MAX_VAR_UINT_BYTES):
            if self.pos >= len(self.data):
                raise MalformedMessage("the message ends inside a number")
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
        raise MalformedMessage("a number is longer than 32 bits")

    def var_bytes(self) -> bytes:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self.data):
            raise MalformedMessage("a length points past the end of the message")
        chunk, self.pos = self.data[self.pos:end], end
        return chunk

    def done(self) -> None:
        if self.pos != len(self.data):
            raise MalformedMessage(f"{len(self.data) - self.pos} bytes follow the message")


def parse(data: bytes) -> Message:
    """One y-protocols message; raises ``MalformedMessage`` for anything else."""
    reader = _Reader(data)
    outer = reader.var_uint()
    if outer == YMessageType.SYNC:
        inner = reader.var_uint()
        kinds = {YSyncMessageType.SYNC_STEP1: Kind.SYNC_STEP1, YSyncMessageType.SYNC_STEP2: Kind.SYNC_STEP2,
                 YSyncMessageType.SYNC_UPDATE: Kind.UPDATE}
        if inner not in kinds:
            raise MalformedMessage(f"unknown sync message type {inner}")
        message = Message(kinds[YSyncMessageType(inner)], reader.var_bytes())
    elif outer == YMessageType.AWARENESS:
        message = Message(Kind.AWARENESS, reader.var_bytes())
    else:
        raise MalformedMessage(f"unknown message type {outer}")
    reader.done()
    return message


def encode(kind: Kind, payload: bytes) -> bytes:
    """The y-protocols bytes of one message."""
    if kind is Kind.AWARENESS:
        head = write_var_uint(YMessageType.AWARENESS)
    else:
        sync_type = {Kind.SYNC_STEP1: YSyncMessageType.SYNC_STEP1, Kind.SYNC_STEP2: YSyncMessageType.SYNC_STEP2,
                     Kind.UPDATE: YSyncMessageType.SYNC_UPDATE}[kind]
        head = write_var_uint(YMessageType.SYNC) + write_var_uint(sync_type)
    return head + write_var_uint(len(payload)) + payload


@dataclass(frozen=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: bytes  # the JSON text as sent; b"null" when the client left

    @property
    def removed(self) -> bool:
        return self.state == b"null"


def parse_awareness(payload: bytes) -> list[AwarenessEntry]:
    """The entries of an awareness update. Each state must be a JSON object or null, since every
    other member's browser runs ``JSON.parse`` on it and would throw on anything else."""
    reader = _Reader(payload)
    entries = []
    for _ in range(reader.var_uint()):
        client_id, clock = reader.var_uint(), reader.var_uint()
        state = reader.var_bytes()
        if len(state) > MAX_AWARENESS_STATE_BYTES:
            raise MalformedMessage(f"an awareness state is over {MAX_AWARENESS_STATE_BYTES} bytes")
        try:
            value = json.loads(state.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise MalformedMessage("an awareness state is not JSON") from None
        if value is not None and not isinstance(value, dict):
            raise MalformedMessage("an awareness state must be an object or null")
        if value is not None and "user" in value:
            _check_user(value["user"])
        entries.append(AwarenessEntry(client_id, clock, b"null" if value is None else state))
    reader.done()
    return entries


# Other members' editors put `user.color` / `colorLight` into `style=` attributes and show `user.name`:
# only plain hex colours (#rrggbb, or #rrggbbaa for the translucent selection) and plain names may reach them.
HEX_COLOUR_RE = re.compile(r"#[0-9a-fA-F]{6}(?:[0-9a-fA-F]{2})?")
USER_NAME_MAX_CHARS = 64
USER_FIELDS = {"id", "name", "color", "colorLight"}


def _check_user(user: Any) -> None:
    if not isinstance(user, dict) or set(user) - USER_FIELDS:
        raise MalformedMessage(f"awareness `user` must be an object with only {', '.join(sorted(USER_FIELDS))}")
    for field in ("color", "colorLight"):
        if field in user and not (isinstance(user[field], str) and HEX_COLOUR_RE.fullmatch(user[field])):
            raise MalformedMessage(f"awareness `user.{field}` must be a colour like #1a2b3c (or #1a2b3c40)")
    name = user.get("name", "")
    if not isinstance(name, str) or len(name) > USER_NAME_MAX_CHARS or any(
            unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise MalformedMessage(f"awareness `user.name` must be plain text of at most {USER_NAME_MAX_CHARS} characters")
    if "id" in user and (isinstance(user["id"], bool) or not isinstance(user["id"], int)):
        raise MalformedMessage("awareness `user.id` must be an integer")


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    out = bytearray(write_var_uint(len(entries)))
    for entry in entries:
        out += write_var_uint(entry.client_id) + write_var_uint(entry.clock)
        out += write_var_uint(len(entry.state)) + entry.state
    return bytes(out)
