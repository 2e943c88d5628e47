"""Chat rooms: messages stored first and published second, history, mentions, presence.

A room's topic is ``room:<name>``. Each change to a room (send, edit, delete)
takes the next value of ``rooms.last_seq`` in the same transaction that stores
it, so the seq order is the commit order, and a client that missed events is
replayed them from the database. New messages are written in batches, one
transaction per batch (server/chat_writer.py: a group commit).
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings

from server.chat_writer import MessageWriter, StoredMessage, take_seqs
from server.text import clean_text
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.hub import Hub, Reset
from server.hub.frames import encode, with_topic
from server.ids import parse_id
from server.presence import Presence
from server.ratelimit import RateLimiter
from server.store.models import Message, Room, User, iso, utcnow
from server.users import public_user
from server.waiters import settle

ROOM_NAME_RE = re.compile(r"[a-z0-9_\-:.]{1,64}")  # fullmatch: `$` lets a trailing newline through
MENTION_RE = re.compile(r"(?<![\w@])@([a-zA-Z0-9_]{3,32})")
MESSAGE_MAX_CHARS = 2000
MAX_MENTIONS = 10
HISTORY_PAGE_DEFAULT = 50
HISTORY_PAGE_MAX = 100
# Replays larger than this answer `reset`: the client reloads history over HTTP instead.
MAX_REPLAY_EVENTS = 1000
ROOM_ID_CACHE_ENTRIES = 100_000
# Durable history lives as long as the database, so its epoch never changes.
DATABASE_EPOCH = "db"


def room_topic(name: str) -> str:
    return f"room:{name}"


def check_room_name(name: str) -> str:
    if not isinstance(name, str) or not ROOM_NAME_RE.fullmatch(name):
        raise InvalidInput(f"Room names are 1–64 characters of a–z, 0–9, _ - : . but got {str(name)[:80]!r}.",
                           code="bad_topic")
    return name


# Rooms whose name starts with a prefix may belong to something (``post:<id>``), which says who may use them:
# (viewer or None, the part after the prefix) -> None, or raises NotFound/Forbidden.
RoomGuard = Callable[[User | None, str], Awaitable[None]]
# Told of every stored message, before its sender's ack: (room, message, author, mentioned users) -> what is
# left to do, or None when there is nothing (most messages: no task is made for them).
MessageListener = Callable[[str, StoredMessage, User, list[User]], Awaitable[None] | None]
# Told when a message's text changes for readers: (message id, its text now, or None when it is gone:
# deleted, or hidden by a moderator; the usernames it mentions now).
ChangeListener = Callable[[int, str | None, list[str]], Awaitable[None]]
# Rooms that belong to something (``post:<id>``) are owned by its owner: (the part after the prefix) -> user id.
RoomOwner = Callable[[str], Awaitable[int | None]]
# A room command (`/imagine <words>`): (author, room, the words after the name) -> the id of the job it started.
ChatCommand = Callable[[User, str, str], Awaitable[str]]
# A room command that takes an attached photo (`/stylize <preset>`): as above, with the photo's reference
# (from the room's upload, or None when none was attached: the command says what it needs).
PhotoCommand = Callable[[User, str, str, str | None], Awaitable[str]]
COMMAND_RE = re.compile(r"/([a-z]{2,20})(?:\s+(.*))?", re.DOTALL)


def clean_message_text(text: Any) -> str:
    return clean_text(text, "text", MESSAGE_MAX_CHARS, required=True)


def message_json(message: Message | StoredMessage, author: User, room: str) -> dict[str, Any]:
    deleted = message.deleted_at is not None
    hidden = message.hidden_at is not None
    return {
        "id": message.id,
        "room": room,
        "seq": message.seq,
        "author": public_user(author),
        "text": "" if deleted else message.text,
        "mentions": message.mentions.split() if message.mentions and not deleted else [],
        "created_at": iso(message.created_at),
        "edited_at": iso(message.edited_at),
        "deleted": deleted,
        "hidden": hidden,
        "job": message.job_id,
    }


def _event_for(message: Message, author: User, room: str, since: int) -> dict[str, Any] | None:
    """What a client that saw everything up to ``since`` needs to learn about this message."""
    if message.deleted_at is not None or message.hidden_at is not None:
        if message.created_seq > since:
            return None  # sent and deleted while away: nothing to show
        return {"type": "chat.deleted", "message": {"id": message.id, "room": room, "deleted": True}}
    kind = "chat.msg" if message.created_seq > since else "chat.edited"
    return {"type": kind, "message": message_json(message, author, room)}


@dataclass
class _Accepted:
    """A message accepted, waiting for its commit and then its turn to be published."""

    stored: asyncio.Future[StoredMessage]  # the writer's
    queue: Callable[[], Awaitable[StoredMessage]]  # queues it again (a retried ref freed meanwhile)
    room: str
    room_id: int
    author: User
    text: str
    mentioned: list[User]
    client_ref: str | None
    published: asyncio.Future[dict[str, Any]]  # what the sender is acked with


class ChatService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], hub: Hub, presence: Presence,
                 limiter: RateLimiter, settings: Settings):
        self._room_ids: dict[str, int] = {}
        self._settings = settings
        self._db = sessions
        self._hub = hub
        self._presence = presence
        self._limiter = limiter
        self._writer = MessageWriter(sessions)
        self._accepted: deque[_Accepted] = deque()
        self._publisher: asyncio.Task | None = None
        self._telling: set[asyncio.Future] = set()  # listeners at work (the loop holds tasks weakly)
        self.room_guards: dict[str, RoomGuard] = {}
        self.message_listeners: list[MessageListener] = []
        self.change_listeners: list[ChangeListener] = []
        self.commands: dict[str, ChatCommand] = {}
        self.photo_commands: dict[str, PhotoCommand] = {}
        self.room_owners: dict[str, RoomOwner] = {}
        hub.register_history("room:", self._replay_topic, self._topic_seq)

    async def check_access(self, viewer: User | None, room: str) -> None:
        """Raises unless ``viewer`` may read (and, signed in, write in) ``room``."""
        check_room_name(room)
        for prefix, guard in self.room_guards.items():
            if room.startswith(prefix):
                await guard(viewer, room.removeprefix(prefix))

    async def may_read(self, principal: Any, room: str) -> bool:
        """The topic policy for ``room:<name>``: public rooms to anyone, owned rooms as their owner says."""
        await self.check_access(principal.user if principal is not None else None, room)
        return True

    async def accept(self, author: User, room: str, text: Any, client_ref: str | None = None,
                     photo: str | None = None) -> asyncio.Future[dict[str, Any]]:
        """Check a message and queue it to be stored; returns the stored message's future (stored, then
        published). Messages accepted one after another take their seqs in that order, so a socket reads
        its next frame while this one waits for its batch's commit (one sender's messages share batches).
        The future runs to the end (stored and published) whether or not anyone waits for it.

        A retry (the same ``client_ref`` with the same text, within ``chat_ref_ttl_secs``) answers the
        first; the same ref with other text is refused, never acked as stored; an older ref is forgotten
        and the message stored. ``photo``: an uploaded photo's reference, for a command that takes one
        (`/stylize`)."""
        text = clean_message_text(text)
        await self.check_access(author, room)
        await self._limiter.require(f"chat-send:{author.id}", self._settings.chat_send_limit,
                                    self._settings.chat_send_window_secs, "You are sending too fast")
        mentioned = await self._mentioned_users(text, author)
        room_id = await self._room_id(room, author.id)
        if client_ref is not None and COMMAND_RE.fullmatch(text):
            # A retried command must not start a second job: answer the stored message at once.
            async with self._db() as db:
                earlier = await db.scalar(select(Message).where(
                    Message.room_id == room_id, Message.author_id == author.id, Message.client_ref == client_ref))
            if earlier is not None and earlier.text == text:
                answered: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                answered.set_result(message_json(earlier, author, room))
                return answered
        job_id = await self._command(author, room, text, photo)
        mentions = " ".join(u.username for u in mentioned)

        def queue() -> asyncio.Future[StoredMessage]:
            return self._writer.enqueue(room_id, author.id, text, mentions, client_ref, job_id)

        # Queued here, in this frame's turn: messages take their seqs in the order they were accepted.
        published: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._accepted.append(_Accepted(queue(), queue, room, room_id, author, text, mentioned, client_ref, published))
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_accepted(), name="chat-publisher")
        return published

    async def _publish_accepted(self) -> None:
        """Publish accepted messages once stored, in the order they were accepted. A commit stores a batch
        at once, and all of it is published in one hub call: no task per message, and scaled out one round
        trip to Redis per batch."""
        while self._accepted:
            try:
                await self._accepted[0].stored
            except Exception:
                pass  # answered below, with the rest of its batch
            ready: list[_Accepted] = []
            while self._accepted and self._accepted[0].stored.done():
                ready.append(self._accepted.popleft())
            stored: list[tuple[_Accepted, StoredMessage, dict[str, Any]]] = []
            for item in ready:
                try:
                    message = await self._stored(item)
                    if isinstance(message, dict):
                        settle(item.published, message)  # a retry
                    else:
                        stored.append((item, message, message_json(message, item.author, item.room)))
                except Exception as exc:  # this message's sender is told; the others go on
                    settle(item.published, failure=exc)
            try:
                await self._hub.publish_stored([(room_topic(item.room), message.seq,
                                                 {"type": "chat.msg", "message": payload})
                                                for item, message, payload in stored])
            except Exception as exc:
                for item, _message, _payload in stored:
                    settle(item.published, failure=exc)
                continue
            for item, message, payload in stored:
                self._tell_listeners(item, message, payload)

    def _tell_listeners(self, item: _Accepted, message: StoredMessage, payload: dict[str, Any]) -> None:
        """Tell the listeners, then ack: at once when none has anything to do, else once they are done."""
        try:
            work = [told for listener in self.message_listeners
                    if (told := listener(item.room, message, item.author, item.mentioned)) is not None]
        except Exception as exc:
            settle(item.published, failure=exc)
            return
        if not work:
            settle(item.published, payload)
            return
        telling = asyncio.ensure_future(_all_done(work, payload))
        self._telling.add(telling)
        telling.add_done_callback(lambda done: _listeners_done(self._telling, done, item.published))

    async def _command(self, author: User, room: str, text: str, photo: str | None = None) -> str | None:
        """Run a room command the text starts with (its job id), or None: other `/words` are plain text."""
        match = COMMAND_RE.fullmatch(text)
        name = match.group(1) if match else None
        words = (match.group(2) or "").strip() if match else ""
        if name in self.photo_commands:
            return await self.photo_commands[name](author, room, words, photo)
        if photo is not None:
            # A photo is never stored with a message; dropping it silently would lose what was meant.
            raise InvalidInput("A photo goes with a command that uses one: /stylize <style>.", code="invalid_photo",
                               data={"field": "photo"})
        command = self.commands.get(name) if name else None
        if command is None:
            return None
        return await command(author, room, words)

    async def _stored(self, item: _Accepted) -> StoredMessage | dict[str, Any]:
        """The stored message, or, for a retry of its ``client_ref``, the message that ref stored before."""
        author, room, client_ref = item.author, item.room, item.client_ref
        for attempt in range(2):
            try:
                # One transaction (shared with the messages sent meanwhile): the seq bump, the row, the
                # commit. A repeated ref trips the unique index, which rolls the bump back too.
                return await (item.stored if attempt == 0 else item.queue())
            except IntegrityError:
                if client_ref is None:
                    raise
            async with self._db() as db:
                earlier = await db.scalar(select(Message).where(
                    Message.room_id == item.room_id, Message.author_id == author.id, Message.client_ref == client_ref))
                if earlier is None:
                    continue  # deleted meanwhile: the ref is free
                if (utcnow() - earlier.created_at).total_seconds() >= self._settings.chat_ref_ttl_secs:
                    earlier.client_ref = None  # remembered long enough: the ref is free again
                    await db.commit()
                    continue
            if earlier.text != item.text:
                raise Conflict(f"The ref {client_ref!r} was used for another message; give every message its own "
                               f"ref (e.g. a random id).", code="ref_reused")
            return message_json(earlier, author, room)  # a retry
        raise Conflict("The message could not be stored; send it again.", code="ref_reused")

    async def edit(self, editor: User, room: str, message_id: int, text: Any) -> dict[str, Any]:
        """Change the text of one's own message (not one a moderator hid: an edit would show it to everyone)."""
        text = clean_message_text(text)
        await self._limiter.require(f"chat-edit:{editor.id}", self._settings.chat_edit_limit,
                                    self._settings.chat_edit_window_secs, "You are editing too fast")
        # Mentions follow the text: one taken out by the edit loses its highlight and its notification.
        mentioned = await self._mentioned_users(text, editor)
        async with self._db() as db:
            message, author = await self._message(db, room, message_id)
            if author.id != editor.id:
                raise Forbidden("Only the author may edit a message.")
            if message.hidden_at is not None:
                raise Forbidden("A moderator hid this message; it cannot be edited.", code="message_hidden")
            message.seq = await take_seqs(db, message.room_id, 1)
            message.text = text
            message.mentions = " ".join(u.username for u in mentioned)
            message.edited_at = utcnow()
            await db.commit()
        payload = message_json(message, author, room)
        await self._hub.publish_stored([(room_topic(room), message.seq, {"type": "chat.edited", "message": payload})])
        await self._changed(message.id, text, payload["mentions"])
        return payload

    async def delete(self, actor: User, room: str, message_id: int) -> None:
        """Delete one's own message; moderators may delete any."""
        async with self._db() as db:
            message, author = await self._message(db, room, message_id)
            # A moderator's right is read here, not from the socket's snapshot: a demotion made a moment ago
            # in another process may not have reached this socket yet.
            if author.id != actor.id and not await db.scalar(select(User.is_moderator).where(User.id == actor.id)):
                raise Forbidden("Only the author or a moderator may delete a message.")
            message.seq = await take_seqs(db, message.room_id, 1)
            message.deleted_at = utcnow()
            message.text = ""
            await db.commit()
        await self._hub.publish_stored([(room_topic(room), message.seq, {
            "type": "chat.deleted", "message": {"id": message.id, "room": room, "deleted": True},
        })])
        await self._changed(message.id, None, [])

    async def _changed(self, message_id: int, text: str | None, mentions: list[str]) -> None:
        for listener in self.change_listeners:
            await listener(message_id, text, mentions)

    async def history(self, viewer: User | None, room: str, *, before: int | None = None,
                      limit: int = HISTORY_PAGE_DEFAULT) -> tuple[list[dict[str, Any]], int | None]:
        """Messages newest first, and the cursor for the page before them (None at the start).
        Hidden messages are left out, except for their author and moderators."""
        await self.check_access(viewer, room)
        limit = max(1, min(limit, HISTORY_PAGE_MAX))
        query = (select(Message, User).join(User, User.id == Message.author_id).join(Room, Room.id == Message.room_id)
                 .where(Room.name == room, Message.deleted_at.is_(None)))
        if viewer is None:
            query = query.where(Message.hidden_at.is_(None))
        elif not viewer.is_moderator:
            query = query.where(Message.hidden_at.is_(None) | (Message.author_id == viewer.id))
        if before is not None:
            query = query.where(Message.id < before)
        async with self._db() as db:
            rows = (await db.execute(query.order_by(Message.id.desc()).limit(limit + 1))).all()
        page = [message_json(message, author, room) for message, author in rows[:limit]]
        next_cursor = page[-1]["id"] if len(rows) > limit else None
        return page, next_cursor

    async def set_hidden(self, message_id: str, hidden: bool) -> None:
        """A moderator's hide or restore: everyone's open pages drop (or get back) the message."""
        ident = parse_id(message_id, "target")
        async with self._db() as db:
            row = (await db.execute(select(Message, User, Room.name).join(User, User.id == Message.author_id)
                                    .join(Room, Room.id == Message.room_id).where(Message.id == ident))).first()
            if row is None or row[0].deleted_at is not None:
                raise NotFound(f"No message {str(message_id)[:40]}.")
            message, author, room = row
            message.seq = await take_seqs(db, message.room_id, 1)
            message.hidden_at = utcnow() if hidden else None
            await db.commit()
        if hidden:
            event = {"type": "chat.deleted", "message": {"id": message.id, "room": room, "deleted": True}}
        else:
            event = {"type": "chat.edited", "message": message_json(message, author, room)}
        await self._hub.publish_stored([(room_topic(room), message.seq, event)])
        await self._changed(message.id, None if hidden else message.text,
                            [] if hidden or not message.mentions else message.mentions.split())

    async def describe(self, message_ids: list[str]) -> dict[str, dict[str, Any]]:
        """What a moderator's queue shows of each message."""
        ids = [parse_id(i, "target") for i in message_ids]
        async with self._db() as db:
            rows = (await db.execute(select(Message, User, Room.name).join(User, User.id == Message.author_id)
                                     .join(Room, Room.id == Message.room_id).where(Message.id.in_(ids)))).all()
        return {str(message.id): message_json(message, author, room) for message, author, room in rows
                if message.deleted_at is None}

    async def _topic_seq(self, topic: str) -> int:
        async with self._db() as db:
            seq = await db.scalar(select(Room.last_seq).where(Room.name == topic.removeprefix("room:")))
        return seq or 0

    async def _replay_topic(self, topic: str, since: int, upto: int | None) -> list[tuple[int, bytes]] | Reset:
        room = topic.removeprefix("room:")
        query = (select(Message, User).join(User, User.id == Message.author_id).join(Room, Room.id == Message.room_id)
                 .where(Room.name == room, Message.seq > since))
        if upto is not None:
            query = query.where(Message.seq <= upto)
        async with self._db() as db:
            rows = (await db.execute(query.order_by(Message.seq).limit(MAX_REPLAY_EVENTS + 1))).all()
        if len(rows) > MAX_REPLAY_EVENTS:
            # Too much missed: the client reloads history over HTTP instead.
            return Reset(DATABASE_EPOCH, await self._topic_seq(topic))
        replay = []
        for message, author in rows:
            event = _event_for(message, author, room, since)
            if event is not None:
                replay.append((message.seq, with_topic(encode(event), topic, message.seq)))
        return replay

    async def room_owner(self, room: str) -> int | None:
        """Who owns a room: the owner of what it belongs to (a post's author), else whoever opened it."""
        for prefix, owner_of in self.room_owners.items():
            if room.startswith(prefix):
                return await owner_of(room.removeprefix(prefix))
        async with self._db() as db:
            return await db.scalar(select(Room.created_by).where(Room.name == room))

    async def room_id(self, name: str, creator_id: int) -> int:
        """The room's id, creating it (owned by ``creator_id``) on first use."""
        return await self._room_id(name, creator_id)

    async def _room_id(self, name: str, creator_id: int) -> int:
        """The room's id, creating the room on first use. Rooms are never renamed or
        deleted, so ids are remembered for the life of the process."""
        room_id = self._room_ids.get(name)
        if room_id is not None:
            return room_id
        async with self._db() as db:
            room_id = await db.scalar(select(Room.id).where(Room.name == name))
            if room_id is None:
                db.add(Room(name=name, created_by=creator_id, last_seq=0))
                try:
                    await db.commit()
                except IntegrityError:
                    await db.rollback()  # created concurrently by someone else
                room_id = await db.scalar(select(Room.id).where(Room.name == name))
        if len(self._room_ids) < ROOM_ID_CACHE_ENTRIES:
            self._room_ids[name] = room_id
        return room_id

    async def _message(self, db: AsyncSession, room: str, message_id: Any) -> tuple[Message, User]:
        if not isinstance(message_id, int):
            raise InvalidInput("`message` must be a message id (an integer).")
        row = (await db.execute(
            select(Message, User).join(User, User.id == Message.author_id).join(Room, Room.id == Message.room_id)
            .where(Message.id == message_id, Room.name == room)
        )).first()
        if row is None or row[0].deleted_at is not None:
            raise NotFound(f"Room {room!r} has no message {message_id}.")
        return row[0], row[1]

    async def _mentioned_users(self, text: str, author: User) -> list[User]:
        if "@" not in text:
            return []
        names = list(dict.fromkeys(m.lower() for m in MENTION_RE.findall(text)))[:MAX_MENTIONS]
        names = [name for name in names if name != author.username]
        if not names:
            return []
        async with self._db() as db:
            return list(await db.scalars(select(User).where(User.username.in_(names))))

    # Presence: who is in a room, announced on the room topic (not sequenced).

    async def join(self, room: str, user: User, conn_id: str) -> None:
        if await self._presence.join(room, user.id, conn_id):
            await self._announce_presence(room, joined=public_user(user))

    async def leave(self, room: str, user: User, conn_id: str) -> None:
        if await self._presence.leave(room, user.id, conn_id):
            await self._announce_presence(room, left=public_user(user))

    async def refresh_presence(self, room: str, user: User, conn_id: str) -> None:
        await self._presence.refresh(room, user.id, conn_id)

    async def presence(self, viewer: User | None, room: str) -> list[dict[str, Any]]:
        """Who is in a room the viewer may read (a hidden post's room is its owner's and moderators')."""
        await self.check_access(viewer, room)
        return await self.present_users(room)

    async def present_users(self, room: str) -> list[dict[str, Any]]:
        ids = await self._presence.members(room)
        if not ids:
            return []
        async with self._db() as db:
            users = {u.id: u for u in await db.scalars(select(User).where(User.id.in_(ids)))}
        return [public_user(users[i]) for i in ids if i in users]

    async def _announce_presence(self, room: str, **change: Any) -> None:
        await self._hub.publish(room_topic(room), {
            "type": "presence", "users": await self.present_users(room), **change,
        }, sequenced=False)

    async def typing(self, room: str, user: User) -> None:
        """Tell the room someone is typing: at most once per user and room per ``typing_interval_secs``
        (more often says nothing new, so it is dropped without an error)."""
        interval = self._settings.typing_interval_secs
        if interval == 0 or (await self._limiter.hit(f"typing:{user.id}:{room}", 1, interval)).allowed:
            await self._hub.publish(room_topic(room), {"type": "typing", "user": public_user(user)}, sequenced=False)


async def _all_done(work: list[Awaitable[None]], result: dict[str, Any]) -> dict[str, Any]:
    for told in work:
        await told
    return result


def _listeners_done(telling: set[asyncio.Future], done: asyncio.Future, published: asyncio.Future) -> None:
    telling.discard(done)
    if done.cancelled():
        published.cancel()
    else:
        settle(published, None if done.exception() else done.result(), failure=done.exception())

