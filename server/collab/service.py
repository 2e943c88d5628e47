"""Collaborative sessions: the one service handlers and sockets call.

Edits arrive as y-protocols messages on ``collab.update``; an accepted edit is applied
to this process's copy of the document (which also validates it), committed to the
update store, then published on ``collab:<id>`` for every member in every process.
Awareness (who is here, where their cursor is) is relayed without being stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from pycrdt import Doc

from config import Settings
from inference.requests import MAX_PROMPT_CHARS
from server.auth import Principal
from server.collab import protocol
from server.collab.documents import (INT_FIELDS, SETTING_FIELDS, LiveDocument, Member, snapshot_of, topic_of,
                                     write_snapshot)
from server.collab.protocol import Kind, MalformedMessage
from server.collab.renders import RenderLog
from server.collab.sessions import (OWNER, SessionDirectory, check_invite_terms, invite_json, may_edit,
                                   session_json)
from server.collab.store import Stored, UpdateStore, merge
from server.errors import Forbidden, InvalidInput, PayloadTooLarge
from server.executors import Executors
from server.hub import Hub
from server.jobs import JobService
from server.topics import TopicPolicy
from server.ratelimit import RateLimiter
from server.store.models import User

log = logging.getLogger(__name__)

DEFAULT_SETTINGS = {"sampler": "Euler a", "steps": 20, "guidance": 7.0}
# The largest number a browser's Yjs holds exactly (a JS safe integer). pycrdt panics on integers past
# 64 bits; the real ranges (steps, sizes, seed) are checked when a render makes a job of the document.
MAX_SETTING_MAGNITUDE = 2**53 - 1


def clean_initial(body: dict[str, Any]) -> dict[str, Any]:
    """The first document of a new session from the request (e.g. the Generate form's draft)."""
    snapshot: dict[str, Any] = {"settings": dict(DEFAULT_SETTINGS)}
    for name in ("prompt", "negative_prompt"):
        value = body.get(name, "")
        if not isinstance(value, str) or len(value) > MAX_PROMPT_CHARS:
            raise InvalidInput(f"`{name}` must be a string of at most {MAX_PROMPT_CHARS} characters.")
        snapshot[name] = value
    settings = body.get("settings")
    settings = {} if settings is None else settings
    if not isinstance(settings, dict) or set(settings) - set(SETTING_FIELDS):
        raise InvalidInput(f"`settings` may hold only {', '.join(SETTING_FIELDS)}.")
    for name, value in settings.items():
        if value is None:
            continue
        if name in ("model", "sampler"):
            if not isinstance(value, str) or len(value) > 128:
                raise InvalidInput(f"`settings.{name}` must be a string.")
        elif not _storable_number(value):
            raise InvalidInput(f"`settings.{name}` must be a finite number within ±{MAX_SETTING_MAGNITUDE}, "
                               f"not {str(value)[:40]}.")
        snapshot["settings"][name] = value
    return snapshot


def _storable_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) <= MAX_SETTING_MAGNITUDE  # false for NaN and the infinities too


def job_params(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The job request a render makes from the document; the job service validates it."""
    params: dict[str, Any] = {"kind": "txt2img", "prompt": snapshot["prompt"],
                              "negative_prompt": snapshot["negative_prompt"]}
    for name, value in snapshot["settings"].items():
        if name in INT_FIELDS and isinstance(value, float) and value.is_integer():
            value = int(value)
        params[name] = value
    return params


class CollabService:
    def __init__(self, sessions: Any, hub: Hub, limiter: RateLimiter, executors: Executors, jobs: JobService,
                 settings: Settings):
        self.directory = SessionDirectory(sessions)
        self.store = UpdateStore(sessions, executors)
        self.renders = RenderLog(sessions)
        self._hub = hub
        self._limiter = limiter
        self._executors = executors
        self._jobs = jobs
        self._settings = settings
        self._live: dict[str, LiveDocument] = {}
        self._loading: dict[str, asyncio.Future[LiveDocument]] = {}
        self._tasks: set[asyncio.Task] = set()

    # Sessions, members, invitations (HTTP)

    async def create(self, owner: User, body: dict[str, Any]) -> dict[str, Any]:
        """A new session owned by ``owner``, its document seeded from the body."""
        # The first update is made before any row is written, so a value pycrdt refuses leaves nothing behind.
        first_update = write_snapshot(Doc(), clean_initial(body))
        session = await self.directory.create(owner, body.get("title"))
        await self.store.append(session.id, first_update)
        return {**session_json(session), "role": OWNER}

    async def list_mine(self, user: User) -> list[dict[str, Any]]:
        """The sessions I belong to, newest first."""
        return await self.directory.list_for(user)

    async def describe(self, user: User, session_id: str) -> dict[str, Any]:
        """The session, my role, its members, the strip of renders and the document's values."""
        session, role = await self.directory.require(session_id, user)
        async with self._using(session_id) as live:
            document = snapshot_of(live.doc)
        return {"session": session_json(session), "role": role,
                "members": await self.directory.members(session_id),
                "renders": await self.renders.strip(session_id), "document": document}

    async def invite(self, user: User, session_id: str, role: Any, *, expires_in_secs: Any = None,
                     max_uses: Any = None) -> dict[str, Any]:
        """An invitation link's secret for a role (owner only), lasting ``expires_in_secs`` (default
        ``collab_invite_default_secs``) for at most ``max_uses`` people (default: no limit)."""
        await self.directory.require(session_id, user, own=True)
        settings = self._settings
        expires_in_secs, max_uses = check_invite_terms(expires_in_secs, max_uses,
                                                       default_secs=settings.collab_invite_default_secs,
                                                       max_secs=settings.collab_invite_max_secs)
        await self._limiter.require(f"collab-invite:{user.id}", settings.collab_invite_limit,
                                    settings.collab_invite_window_secs, "Too many invitations")
        token, invite = await self.directory.invite(session_id, role, user, expires_in_secs=expires_in_secs,
                                                    max_uses=max_uses)
        return {"token": token, "role": role, "path": f"/collab/join/{token}", **invite_json(invite)}

    async def invites(self, user: User, session_id: str) -> list[dict[str, Any]]:
        """The invitations that still admit someone (owner only)."""
        await self.directory.require(session_id, user, own=True)
        return await self.directory.invites(session_id)

    async def revoke_invite(self, user: User, session_id: str, invite_id: str) -> None:
        """The owner revokes an invitation link."""
        await self.directory.require(session_id, user, own=True)
        await self.directory.revoke_invite(session_id, invite_id)

    async def accept(self, user: User, token: Any) -> dict[str, Any]:
        """Join the session an invitation names; members keep a higher role."""
        session, role, changed = await self.directory.accept(token, user)
        if changed:
            await self._publish_members(session.id)
        return {"session": session_json(session), "role": role}

    async def remove_member(self, user: User, session_id: str, user_id: int) -> None:
        """The owner removes someone; their sockets leave the session in every process."""
        await self.directory.require(session_id, user, own=True)
        await self.directory.remove(session_id, user_id)
        await self._publish_members(session_id)

    async def close(self, user: User, session_id: str) -> dict[str, Any]:
        """The owner closes the session: no more edits or renders; sockets are told and let go."""
        await self.directory.require(session_id, user, own=True)
        session = await self.directory.close(session_id)
        await self._hub.publish(topic_of(session_id), {"type": "collab.closed", "session": session_id})
        return session_json(session)

    async def _publish_members(self, session_id: str) -> None:
        members = await self.directory.members(session_id)
        await self._hub.publish(topic_of(session_id), {"type": "collab.members", "session": session_id,
                                                       "members": members})

    # Renders

    async def render(self, user: User, session_id: str) -> dict[str, Any]:
        """A job from the document as it is now; every member is told and may watch it."""
        await self.directory.require(session_id, user, edit=True)
        async with self._using(session_id) as live:
            snapshot = snapshot_of(live.doc)
        job = await self._jobs.submit(user, job_params(snapshot))
        render = await self.renders.add(session_id, job["id"], user, snapshot)
        await self._hub.publish(topic_of(session_id), {"type": "collab.render", "session": session_id,
                                                       "render": render})
        return {"render": render, "job": job}

    async def restore(self, user: User, session_id: str, render_id: str) -> dict[str, Any]:
        """Put a render's document back, as one edit every member sees."""
        await self.directory.require(session_id, user, edit=True)
        render = await self.renders.get(session_id, render_id)
        async with self._using(session_id) as live:
            update = write_snapshot(live.doc, json.loads(render.snapshot))
            await self._commit(live, update)
            return {"document": snapshot_of(live.doc)}

    # Topic policy

    async def may_watch(self, principal: Principal | None, session_id: str) -> bool:
        """``collab:<id>`` is for the members of an open session."""
        return principal is not None and await self.directory.role_of(session_id, principal.user.id) is not None

    async def may_watch_job(self, principal: Principal | None, job_id: str) -> bool:
        """A session's members may watch the jobs its renders made."""
        return principal is not None and await self.renders.member_may_watch(principal.user.id, job_id)

    def wire(self, topics: TopicPolicy, jobs: JobService) -> None:
        """`collab:<id>` topics for the members (their sockets tracked as they come and go); members may
        watch the jobs their renders made."""
        topics.register("collab", self.may_watch, joined=self.join, left=self.leave)
        jobs.add_watch_grant(self.may_watch_job)

    # Sockets

    async def join(self, member: Member, session_id: str) -> None:
        """A socket subscribed to the session's topic (the policy has let it in)."""
        live = await self._acquire(session_id)
        if member in live.members:
            await self._release(live)
        else:
            live.members[member] = {}

    async def leave(self, member: Member, session_id: str) -> None:
        """A socket left (unsub, removed, closed): its cursors vanish for the others."""
        live = self._live.get(session_id)
        if live is None or member not in live.members:
            return
        gone = live.departure(member)
        try:
            if gone is not None:
                await self._hub.publish(live.topic, {"type": "collab.update", "session": session_id, "data": gone},
                                        sequenced=False)
        finally:
            await self._release(live)

    async def receive(self, member: Member, session_id: Any, data: Any, *, confirm: bool = False) -> list[bytes]:
        """Handle one y-protocols message from a socket; returns the replies for that socket alone.

        An edit is applied at once and stored and published in the background, so a socket's next
        keystroke does not wait for a database commit; with ``confirm`` it returns once stored.
        """
        if not isinstance(data, bytes):
            raise InvalidInput("`data` must be raw bytes (msgpack bin).", code="bad_frame")
        if len(data) > self._settings.collab_max_update_bytes:
            raise PayloadTooLarge(f"A collab message may be at most {self._settings.collab_max_update_bytes} bytes "
                                  f"but is {len(data)}; send large edits as several updates.",
                                  code="update_too_large")
        live = self._live.get(session_id) if isinstance(session_id, str) else None
        if live is None or member not in live.members:
            raise InvalidInput(f"Subscribe to collab:{str(session_id)[:40]} first.", code="not_subscribed")
        user = member.principal.user if member.principal else None
        role = live.roles.get(user.id) if user else None
        if role is None or live.closed:
            raise Forbidden("You are no longer a member of this session.")
        await self._limiter.require(f"collab:{session_id}:{user.id}", self._settings.collab_update_limit,
                                    self._settings.collab_update_window_secs,
                                    f"More than {self._settings.collab_update_limit} collab messages in "
                                    f"{self._settings.collab_update_window_secs} s")
        try:
            message = protocol.parse(data)
            if message.kind is Kind.SYNC_STEP1:
                return self._answer_step1(live, message.payload, role)
            if message.kind is Kind.AWARENESS:
                live.note_awareness(protocol.parse_awareness(message.payload), member)
                await self._hub.publish(live.topic, {"type": "collab.update", "session": session_id, "data": data},
                                        sequenced=False)
                return []
            if not may_edit(role):
                raise Forbidden("Viewers cannot edit the document.")
            if live.stored_bytes + len(message.payload) > self._settings.collab_max_document_bytes:
                raise PayloadTooLarge(f"The session's document has reached "
                                      f"{self._settings.collab_max_document_bytes // 1024} KiB; no more edits fit.",
                                      code="document_too_large")
            live.apply(message.payload)
        except MalformedMessage as exc:
            raise InvalidInput(f"Not a y-protocols message: {exc}.", code="bad_update") from None
        except ValueError as exc:  # pycrdt refuses updates (and state vectors) it cannot decode
            raise InvalidInput(f"Not a valid Yjs update: {str(exc)[:120]}", code="bad_update") from None
        if message.payload != protocol.EMPTY_UPDATE:
            if confirm:
                await self._commit(live, message.payload)
            else:
                self._spawn(self._commit_for(member, live, message.payload))
        return []

    async def _commit_for(self, member: Member, live: LiveDocument, update: bytes) -> None:
        try:
            await self._commit(live, update)
        except Exception:
            log.exception("could not store an update of session %s", live.session_id)
            member.emit({"type": "error", "code": "internal_error", "session": live.session_id,
                         "message": "An edit could not be stored; reload the session."})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer_step1(self, live: LiveDocument, state_vector: bytes, role: str) -> list[bytes]:
        replies = [protocol.encode(Kind.SYNC_STEP2, live.doc.get_update(state_vector))]
        if may_edit(role):  # ask editors for what they have that we lack (edits made offline)
            replies.append(protocol.encode(Kind.SYNC_STEP1, live.doc.get_state()))
        awareness = live.awareness_message()
        if awareness is not None:
            replies.append(awareness)
        return replies

    async def _commit(self, live: LiveDocument, update: bytes) -> None:
        """Store an applied update, then tell every member (stored first: see store.py)."""
        live.stored_bytes += len(update)  # counted before the commit, so concurrent edits cannot overshoot
        await self.store.append(live.session_id, update)
        live.stored_rows += 1
        await self._hub.publish(live.topic, {"type": "collab.update", "session": live.session_id,
                                             "data": protocol.encode(Kind.UPDATE, update)})
        limit = self._settings.collab_compact_rows
        if limit and live.stored_rows >= limit and not live.compacting:
            live.compacting = True
            self._spawn(self._compact(live))

    async def _compact(self, live: LiveDocument) -> None:
        try:
            after = await self.store.compact(live.session_id)
            live.stored_rows, live.stored_bytes = after.rows, after.bytes
        except Exception:
            log.exception("compacting session %s failed; its updates stay as they are", live.session_id)
        finally:
            live.compacting = False

    async def compact(self, session_id: str) -> Stored:
        """Compact a session's stored updates now (benchmarks, maintenance)."""
        return await self.store.compact(session_id)

    # This process's copies of documents

    async def _acquire(self, session_id: str) -> LiveDocument:
        live = self._live.get(session_id)
        if live is None:
            loading = self._loading.get(session_id)
            if loading is None:
                loading = self._loading[session_id] = asyncio.ensure_future(self._load(session_id))
                loading.add_done_callback(lambda _: self._loading.pop(session_id, None))
            live = await asyncio.shield(loading)
        live.users += 1
        return live

    async def _load(self, session_id: str) -> LiveDocument:
        session = await self.directory.get(session_id)
        live = LiveDocument(session_id, await self.directory.roles(session_id), session.closed_at is not None)
        # Watch the topic before reading the store: an update is stored before it is published,
        # so each one is either in what we read or in what the hub delivers (or both: harmless).
        await self._hub.subscribe(live.topic, live)
        try:
            updates = await self.store.load(session_id)
            if updates:
                live.apply(await self._executors.run_cpu(merge, updates))
        except Exception:
            await self._hub.unsubscribe(live.topic, live)
            raise
        live.stored_rows, live.stored_bytes = len(updates), sum(map(len, updates))
        self._live[session_id] = live
        return live

    async def _release(self, live: LiveDocument) -> None:
        live.users -= 1
        if live.users <= 0 and self._live.get(live.session_id) is live:
            del self._live[live.session_id]
            await self._hub.unsubscribe(live.topic, live)

    @asynccontextmanager
    async def _using(self, session_id: str) -> AsyncIterator[LiveDocument]:
        live = await self._acquire(session_id)
        try:
            yield live
        finally:
            await self._release(live)

    async def close_all(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()
