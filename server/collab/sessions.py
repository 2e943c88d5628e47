"""Who is in a session and with which role: owner, editor, viewer; invitations by link."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound
from server.store.collab_tables import CollabInvite, CollabMember, CollabRemoval, CollabSession
from server.store.models import User, iso, utcnow
from server.users import public_user

OWNER, EDITOR, VIEWER = "owner", "editor", "viewer"
INVITE_ROLES = (EDITOR, VIEWER)
RANK = {VIEWER: 0, EDITOR: 1, OWNER: 2}
TITLE_MAX_CHARS = 120
SESSION_LIST_MAX = 50
INVITE_MAX_USES = 1000
INVITE_MIN_SECS = 60
INVITE_LIST_MAX = 100



def session_json(session: CollabSession) -> dict[str, Any]:
    return {"id": session.id, "title": session.title, "owner": session.owner_id,
            "created_at": iso(session.created_at), "closed": session.closed_at is not None,
            "closed_at": iso(session.closed_at)}


def may_edit(role: str | None) -> bool:
    return role in (OWNER, EDITOR)


def check_title(title: Any) -> str:
    if title is None:
        return ""
    if not isinstance(title, str) or len(title.strip()) > TITLE_MAX_CHARS:
        raise InvalidInput(f"`title` must be a string of at most {TITLE_MAX_CHARS} characters.")
    return title.strip()


def _invite_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite_json(invite: CollabInvite) -> dict[str, Any]:
    """What the owner sees of an invitation (never its secret): its id is the secret's sha256."""
    return {"id": invite.token_hash, "role": invite.role, "created_at": iso(invite.created_at),
            "expires_at": iso(invite.expires_at), "max_uses": invite.max_uses, "uses": invite.uses,
            "revoked": invite.revoked_at is not None}


def check_invite_terms(expires_in_secs: Any, max_uses: Any, *, default_secs: int, max_secs: int
                       ) -> tuple[int, int | None]:
    """How long a new invitation lasts and how many may use it (None: anyone with the link until it expires)."""
    if expires_in_secs is None:
        expires_in_secs = default_secs
    if (isinstance(expires_in_secs, bool) or not isinstance(expires_in_secs, int)
            or not INVITE_MIN_SECS <= expires_in_secs <= max_secs):
        raise InvalidInput(f"`expires_in_secs` must be a whole number of seconds from {INVITE_MIN_SECS} to {max_secs}.")
    if max_uses is not None and (isinstance(max_uses, bool) or not isinstance(max_uses, int)
                                 or not 1 <= max_uses <= INVITE_MAX_USES):
        raise InvalidInput(f"`max_uses` must be from 1 to {INVITE_MAX_USES}, or absent for no limit.")
    return expires_in_secs, max_uses


class SessionDirectory:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions

    async def create(self, owner: User, title: str) -> CollabSession:
        """A new open session with its owner as the first member."""
        session = CollabSession(id=uuid.uuid4().hex, owner_id=owner.id, title=check_title(title))
        async with self._db() as db:
            db.add(session)
            await db.flush()
            db.add(CollabMember(session_id=session.id, user_id=owner.id, role=OWNER))
            await db.commit()
        return session

    async def get(self, session_id: str) -> CollabSession:
        async with self._db() as db:
            session = await db.get(CollabSession, session_id)
        if session is None:
            raise NotFound(f"No session {session_id}.")
        return session

    async def role_of(self, session_id: str, user_id: int) -> str | None:
        """The member's role in an open session; None for non-members and closed sessions."""
        async with self._db() as db:
            return await db.scalar(
                select(CollabMember.role).join(CollabSession, CollabSession.id == CollabMember.session_id)
                .where(CollabMember.session_id == session_id, CollabMember.user_id == user_id,
                       CollabSession.closed_at.is_(None)))

    async def roles(self, session_id: str) -> dict[int, str]:
        async with self._db() as db:
            rows = await db.execute(select(CollabMember.user_id, CollabMember.role)
                                    .where(CollabMember.session_id == session_id))
            return {user_id: role for user_id, role in rows}

    async def require(self, session_id: str, user: User, *, edit: bool = False, own: bool = False
                      ) -> tuple[CollabSession, str]:
        """The session and the user's role, or NotFound (not a member) / Forbidden (role too low)."""
        session = await self.get(session_id)
        role = (await self.roles(session_id)).get(user.id)
        if role is None:
            raise NotFound(f"No session {session_id}.")  # sessions are not revealed to outsiders
        if session.closed_at is not None and (edit or own):
            raise Conflict("The session is closed.", code="session_closed")
        if own and role != OWNER:
            raise Forbidden("Only the session's owner may do that.")
        if edit and not may_edit(role):
            raise Forbidden("Viewers cannot edit or render.")
        return session, role

    async def members(self, session_id: str) -> list[dict[str, Any]]:
        """Members with their roles, owner first, then by when they joined."""
        async with self._db() as db:
            rows = (await db.execute(select(CollabMember, User).join(User, User.id == CollabMember.user_id)
                                     .where(CollabMember.session_id == session_id)
                                     .order_by(CollabMember.joined_at))).all()
        members = [{"user": public_user(user), "role": member.role, "joined_at": iso(member.joined_at)}
                   for member, user in rows]
        return sorted(members, key=lambda m: m["role"] != OWNER)  # stable: the rest keep join order

    async def list_for(self, user: User) -> list[dict[str, Any]]:
        """The sessions a user belongs to, newest first."""
        async with self._db() as db:
            rows = (await db.execute(select(CollabSession, CollabMember.role)
                                     .join(CollabMember, CollabMember.session_id == CollabSession.id)
                                     .where(CollabMember.user_id == user.id)
                                     .order_by(CollabSession.created_at.desc()).limit(SESSION_LIST_MAX))).all()
        return [{**session_json(session), "role": role} for session, role in rows]

    async def invite(self, session_id: str, role: Any, by: User, *, expires_in_secs: int, max_uses: int | None
                     ) -> tuple[str, CollabInvite]:
        """A new invitation secret for ``role``; only its hash is stored."""
        if role not in INVITE_ROLES:
            raise InvalidInput(f"`role` must be one of {', '.join(INVITE_ROLES)} but is {str(role)[:20]!r}.")
        token = secrets.token_urlsafe(24)
        now = utcnow()
        invite = CollabInvite(token_hash=_invite_hash(token), session_id=session_id, role=role, created_by=by.id,
                              created_at=now, expires_at=now + dt.timedelta(seconds=expires_in_secs),
                              max_uses=max_uses, uses=0)
        async with self._db() as db:
            db.add(invite)
            await db.commit()
        return token, invite

    async def invites(self, session_id: str) -> list[dict[str, Any]]:
        """The session's invitations that still admit someone, newest first."""
        async with self._db() as db:
            rows = await db.scalars(select(CollabInvite).where(
                CollabInvite.session_id == session_id, CollabInvite.revoked_at.is_(None),
                CollabInvite.expires_at > utcnow(),
            ).order_by(CollabInvite.created_at.desc()).limit(INVITE_LIST_MAX))
            return [invite_json(invite) for invite in rows
                    if invite.max_uses is None or invite.uses < invite.max_uses]

    async def revoke_invite(self, session_id: str, invite_id: str) -> None:
        """The link admits nobody from now on (members it admitted stay: remove them for that)."""
        async with self._db() as db:
            revoked = (await db.execute(update(CollabInvite).where(
                CollabInvite.session_id == session_id, CollabInvite.token_hash == invite_id,
            ).values(revoked_at=func.coalesce(CollabInvite.revoked_at, utcnow())))).rowcount
            await db.commit()
        if not revoked:
            raise NotFound("This session has no such invitation.")

    async def accept(self, token: Any, user: User) -> tuple[CollabSession, str, bool]:
        """Join through an invitation: (session, role now, whether anything changed).

        A member keeps a higher role than the invitation's (an owner stays owner) and uses up nothing.
        Expired, used-up and revoked invitations admit nobody; nor does one made before its owner last
        removed this person."""
        if not isinstance(token, str) or not 8 <= len(token) <= 64:
            raise NotFound("No such invitation.")
        now = utcnow()
        async with self._db() as db:
            invite = await db.get(CollabInvite, _invite_hash(token))
            if invite is None:
                raise NotFound("No such invitation.")
            session = await db.get(CollabSession, invite.session_id)
            if session is None or session.closed_at is not None:
                raise Conflict("The session is closed.", code="session_closed")
            member = await db.get(CollabMember, (session.id, user.id))
            if member is not None and RANK[member.role] >= RANK[invite.role]:
                return session, member.role, False
            if invite.revoked_at is not None or invite.expires_at <= now:
                raise Gone("This invitation has expired or was revoked; ask for a new one.", code="invite_expired")
            removal = await db.get(CollabRemoval, (session.id, user.id))
            if removal is not None and invite.created_at <= removal.removed_at:
                raise Gone("You were removed from this session; this invitation no longer admits you.",
                           code="invite_revoked")
            # Counted in the same statement that checks the limit, so two people cannot both take the last use.
            taken = (await db.execute(update(CollabInvite).where(
                CollabInvite.token_hash == invite.token_hash,
                (CollabInvite.max_uses.is_(None)) | (CollabInvite.uses < CollabInvite.max_uses),
            ).values(uses=CollabInvite.uses + 1))).rowcount
            if not taken:
                raise Gone("This invitation has been used up; ask for a new one.", code="invite_used_up")
            if member is None:
                db.add(CollabMember(session_id=session.id, user_id=user.id, role=invite.role))
            else:
                member.role = invite.role
            await db.commit()
            return session, invite.role, True

    async def remove(self, session_id: str, user_id: int) -> None:
        """Remove a member; invitations made until now no longer admit them (they may have kept the links)."""
        async with self._db() as db:
            member = await db.get(CollabMember, (session_id, user_id))
            if member is None:
                raise NotFound(f"User {user_id} is not a member of this session.")
            if member.role == OWNER:
                raise InvalidInput("The owner cannot be removed; close the session instead.", code="owner")
            await db.execute(delete(CollabMember).where(CollabMember.session_id == session_id,
                                                        CollabMember.user_id == user_id))
            removal = await db.get(CollabRemoval, (session_id, user_id))
            if removal is None:
                db.add(CollabRemoval(session_id=session_id, user_id=user_id, removed_at=utcnow()))
            else:
                removal.removed_at = utcnow()
            await db.commit()

    async def close(self, session_id: str) -> CollabSession:
        async with self._db() as db:
            await db.execute(update(CollabSession).where(CollabSession.id == session_id,
                                                         CollabSession.closed_at.is_(None))
                             .values(closed_at=utcnow()))
            await db.execute(delete(CollabInvite).where(CollabInvite.session_id == session_id))
            await db.commit()
        return await self.get(session_id)
