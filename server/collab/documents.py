"""A session's document: its shape, and the live copy each process keeps while it is in use.

The document is a pycrdt ``Doc`` with the same roots the browser's Yjs doc uses:
``prompt`` and ``negative_prompt`` (Text) and ``settings`` (Map: model, sampler,
steps, guidance, width, height, seed). Merging is the CRDT's, never ours.

The server only ever edits a whole text at once (restoring a render), so it never
computes a position inside a string; where pycrdt takes an index (0.14 counts UTF-8
bytes, Yjs UTF-16 units) it takes it from pycrdt's own ``len``. The update format
between the two is the same Yjs encoding, so positions agree on the wire.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from pycrdt import Doc, Map, Text

from server.auth import Principal
from server.collab import protocol
from server.collab.protocol import AwarenessEntry, Kind
from server.errors import Forbidden
from server.hub import frames

log = logging.getLogger(__name__)

PROMPT, NEGATIVE, SETTINGS = "prompt", "negative_prompt", "settings"
SETTING_FIELDS = ("model", "sampler", "steps", "guidance", "width", "height", "seed")
INT_FIELDS = ("steps", "width", "height", "seed")


def topic_of(session_id: str) -> str:
    return f"collab:{session_id}"


def roots(doc: Doc) -> tuple[Text, Text, Map]:
    return doc.get(PROMPT, type=Text), doc.get(NEGATIVE, type=Text), doc.get(SETTINGS, type=Map)


def _plain(value: Any) -> Any:
    # Yjs sends whole numbers of a JS double as floats sometimes; a settings form wants 20, not 20.0.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def snapshot_of(doc: Doc) -> dict[str, Any]:
    """The document as plain values: what a render is made from and what restoring puts back."""
    prompt, negative, settings = roots(doc)
    values = settings.to_py() or {}
    return {"prompt": str(prompt), "negative_prompt": str(negative),
            "settings": {name: _plain(values.get(name)) for name in SETTING_FIELDS if values.get(name) is not None}}


def write_snapshot(doc: Doc, snapshot: dict[str, Any]) -> bytes:
    """Put a snapshot's values into the document as one edit; returns that edit as a Yjs update."""
    before = doc.get_state()
    prompt, negative, settings = roots(doc)
    with doc.transaction(origin="server"):
        for text, value in ((prompt, snapshot.get("prompt", "")), (negative, snapshot.get("negative_prompt", ""))):
            if str(text) != value:
                del text[0:len(text)]
                text.insert(0, value)
        wanted = snapshot.get("settings", {})
        for name in SETTING_FIELDS:
            if name in wanted and settings.get(name) != wanted[name]:
                settings[name] = wanted[name]
            elif name not in wanted and name in settings:
                del settings[name]
    return doc.get_update(before)


class Member(Protocol):
    """A socket in a session, as the document sees it (``server.realtime.Connection``)."""

    principal: Principal | None

    def emit(self, event: dict[str, Any]) -> None: ...

    def revoke(self, topic: str, event: dict[str, Any]) -> None: ...


class LiveDocument:
    """One process's copy of a session while some socket or request here uses it.

    It watches the session's topic on the hub like a socket does, so updates accepted by
    other processes reach this copy too (applying an update twice changes nothing), and
    so do membership changes: a removed member's sockets are cut off in every process.
    """

    def __init__(self, session_id: str, roles: dict[int, str], closed: bool):
        self.session_id = session_id
        self.topic = topic_of(session_id)
        self.doc = Doc()
        self.roles = roles
        self.closed = closed
        self.users = 0  # sockets and requests holding it; unloaded at zero
        self.stored_rows = 0  # rows in the store since the last snapshot, to know when to compact
        self.stored_bytes = 0  # what those rows take, bounded by collab_max_document_bytes
        self.compacting = False
        self.awareness: dict[int, AwarenessEntry] = {}
        self.members: dict[Member, dict[int, int]] = {}  # socket -> the awareness clients it speaks for

    def apply(self, update: bytes) -> None:
        """Integrate a Yjs update; raises ValueError when it cannot be decoded."""
        if update != protocol.EMPTY_UPDATE:
            self.doc.apply_update(update)

    def note_awareness(self, entries: list[AwarenessEntry], member: Member | None = None) -> None:
        """Keep the latest awareness states; a member may speak only for the clients it introduced."""
        if member is not None:
            for entry in entries:
                owner = next((m for m, clients in self.members.items() if entry.client_id in clients), None)
                # The same user may take a client id over: a reconnecting socket before the old one is gone.
                if owner is not None and owner is not member and _user_id(owner) != _user_id(member):
                    raise Forbidden("That awareness client id belongs to another member.", code="not_your_client")
        for entry in entries:
            known = self.awareness.get(entry.client_id)
            if known is not None and known.clock > entry.clock:
                continue
            if entry.removed:
                self.awareness.pop(entry.client_id, None)
            else:
                self.awareness[entry.client_id] = entry
            if member is not None and member in self.members:
                if entry.removed:
                    self.members[member].pop(entry.client_id, None)
                else:
                    self.members[member][entry.client_id] = entry.clock

    def awareness_message(self) -> bytes | None:
        if not self.awareness:
            return None
        return protocol.encode(Kind.AWARENESS, protocol.encode_awareness(list(self.awareness.values())))

    def departure(self, member: Member) -> bytes | None:
        """The awareness update saying a leaving socket's clients are gone (its cursors vanish)."""
        clients = self.members.pop(member, {})
        gone = [AwarenessEntry(client_id, clock + 1, b"null") for client_id, clock in clients.items()]
        if not gone:
            return None
        self.note_awareness(gone)
        return protocol.encode(Kind.AWARENESS, protocol.encode_awareness(gone))

    # The hub delivers the session topic's events here, from this process and every other.

    def deliver(self, topic: str, seq: int | None, frame: bytes) -> None:
        try:
            event = frames.decode(frame)
            kind = event.get("type")
            if kind == "collab.update":
                message = protocol.parse(event["data"])
                if message.edits:
                    self.apply(message.payload)
                elif message.kind is Kind.AWARENESS:
                    self.note_awareness(protocol.parse_awareness(message.payload))
            elif kind == "collab.members":
                self._members_changed({m["user"]["id"]: m["role"] for m in event["members"]})
            elif kind == "collab.closed":
                self.closed = True
                for member in list(self.members):
                    member.revoke(self.topic, {"type": "collab.closed", "session": self.session_id})
        except Exception:  # only validated events are published; a bad one must not stop the others
            log.exception("could not apply an event of %s", topic)

    def reset(self, topic: str, epoch: str) -> None:
        """Nothing to do: this copy counts no seqs, and applying an update twice changes nothing."""

    def _members_changed(self, roles: dict[int, str]) -> None:
        self.roles = roles
        for member in list(self.members):
            user_id = member.principal.user.id if member.principal else None
            if user_id not in roles:
                member.revoke(self.topic, {"type": "collab.removed", "session": self.session_id})


def _user_id(member: Member) -> int | None:
    return member.principal.user.id if member.principal is not None else None
