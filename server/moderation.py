"""Reports and moderation: anyone signed in reports, moderators hide or restore.

Each kind of thing that can be reported (posts, chat messages, hub models)
registers a ``Target`` that knows how to hide, restore and describe it, so this
module knows nothing of their tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from sqlalchemy import func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import Forbidden, InvalidInput, NotFound
from server.ids import as_id
from server.store.community_tables import Report
from server.store.models import User, iso, utcnow
from server.users import public_user

REASONS = ("spam", "nsfw", "harassment", "copyright", "illegal", "other")
DETAILS_MAX_CHARS = 1000
QUEUE_PAGE_MAX = 50
TARGET_ID_MAX_CHARS = 64


@dataclass(frozen=True)
class Target:
    set_hidden: Callable[[str, bool], Awaitable[None]]  # raises NotFound for an unknown id
    describe: Callable[[list[str]], Awaitable[dict[str, dict[str, Any]]]]  # id -> summary, for the queue


def report_json(report: Report, reporter: User) -> dict[str, Any]:
    return {"id": report.id, "kind": report.target_kind, "target": report.target_id, "reason": report.reason,
            "details": report.details, "status": report.status, "reporter": public_user(reporter),
            "created_at": iso(report.created_at)}


class ModerationService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self._db = sessions
        self._targets: dict[str, Target] = {}

    def register(self, kind: str, target: Target) -> None:
        self._targets[kind] = target

    async def report(self, reporter: User, kind: Any, target_id: Any, reason: Any,
                     details: Any = "") -> tuple[dict[str, Any], bool]:
        """File a report; the second report of the same thing by the same person is the first. (report, created)"""
        if not isinstance(kind, str) or kind not in self._targets:
            raise InvalidInput(f"`kind` must be one of {', '.join(sorted(self._targets))}.")
        if reason not in REASONS:
            raise InvalidInput(f"`reason` must be one of {', '.join(REASONS)}.")
        if not isinstance(details, str) or len(details) > DETAILS_MAX_CHARS:
            raise InvalidInput(f"`details` must be a string of at most {DETAILS_MAX_CHARS} characters.",
                               code="too_long")
        if not isinstance(target_id, str):  # a JSON number: every kind's ids are integers
            number = as_id(target_id)
            target_id = "" if number is None else str(number)
        if not target_id or len(target_id) > TARGET_ID_MAX_CHARS:
            raise InvalidInput("`target` must be the id of the post, message or model.")
        if target_id not in await self._targets[kind].describe([target_id]):
            raise NotFound(f"No {kind} {target_id}.")
        async with self._db() as db:
            report = Report(reporter_id=reporter.id, target_kind=kind, target_id=target_id, reason=reason,
                            details=details.strip())
            db.add(report)
            try:
                await db.commit()
                created = True
            except IntegrityError:
                await db.rollback()
                report = await db.scalar(select(Report).where(
                    Report.reporter_id == reporter.id, Report.target_kind == kind, Report.target_id == target_id))
                created = False
        return report_json(report, reporter), created

    async def queue(self, moderator: User, *, status: str = "open", before: int | None = None,
                    limit: int = 20) -> tuple[list[dict[str, Any]], int | None]:
        """Reported things, most recently reported first, each with its reports and a summary."""
        require_moderator(moderator)
        if status not in ("open", "hidden", "dismissed"):
            raise InvalidInput("`status` must be open, hidden or dismissed.")
        limit = max(1, min(limit, QUEUE_PAGE_MAX))
        latest = func.max(Report.id).label("latest")
        grouped = (select(Report.target_kind, Report.target_id, latest, func.count().label("count"))
                   .where(Report.status == status).group_by(Report.target_kind, Report.target_id))
        if before is not None:
            grouped = grouped.having(latest < before)
        async with self._db() as db:
            groups = (await db.execute(grouped.order_by(latest.desc()).limit(limit + 1))).all()
            page = groups[:limit]
            reports = (await db.execute(
                select(Report, User).join(User, User.id == Report.reporter_id).where(
                    Report.status == status,
                    Report.id <= max((g.latest for g in page), default=0),
                    tuple_(Report.target_kind, Report.target_id).in_([(g.target_kind, g.target_id) for g in page]))
                .order_by(Report.id.desc()))).all()
        by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for report, reporter in reports:
            by_target.setdefault((report.target_kind, report.target_id), []).append(report_json(report, reporter))
        summaries: dict[str, dict[str, dict[str, Any]]] = {}
        for kind in {g.target_kind for g in page}:
            ids = [g.target_id for g in page if g.target_kind == kind]
            summaries[kind] = await self._targets[kind].describe(ids) if kind in self._targets else {}
        items = [{"kind": g.target_kind, "target": g.target_id, "count": g.count,
                  "subject": summaries[g.target_kind].get(g.target_id),
                  "reports": by_target.get((g.target_kind, g.target_id), [])} for g in page]
        return items, (page[-1].latest if len(groups) > limit else None)

    async def act(self, moderator: User, kind: str, target_id: str, action: str) -> int:
        """hide, restore or dismiss; closes the open reports of that thing and says how many."""
        require_moderator(moderator)
        target = self._targets.get(kind)
        if target is None:
            raise NotFound(f"Nothing of kind {kind!r} can be moderated.")
        if action == "hide":
            await target.set_hidden(target_id, True)
        elif action == "restore":
            await target.set_hidden(target_id, False)
        elif action != "dismiss":
            raise InvalidInput("The action must be hide, restore or dismiss.")
        status = {"hide": "hidden", "restore": "dismissed", "dismiss": "dismissed"}[action]
        async with self._db() as db:
            closed = (await db.execute(update(Report).where(
                Report.target_kind == kind, Report.target_id == target_id, Report.status == "open",
            ).values(status=status, resolved_by=moderator.id, resolved_at=utcnow()))).rowcount
            await db.commit()
        return closed


def require_moderator(user: User) -> None:
    if not user.is_moderator:
        raise Forbidden("Only moderators may do this.")
