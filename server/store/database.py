"""The async engine and session factory for SQLite (embedded) or MySQL/MariaDB (scaled out).

Two faults are survived here rather than answered with a 500: a connection that dies under a read
(the read runs once more on a fresh connection, when its transaction has written nothing, so
nothing else is lost with the old connection), and a transaction MariaDB picks as a deadlock
victim (``run_transaction`` runs it again).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, TypeVar

from sqlalchemy import Select, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session as SyncSession
from sqlalchemy.orm import SessionTransaction

log = logging.getLogger(__name__)

# SQLite serialises writers; wait for the lock rather than failing at once.
SQLITE_BUSY_TIMEOUT_MS = 5000
# MySQL/MariaDB error 1213: the transaction was chosen as a deadlock victim and rolled back whole.
MYSQL_DEADLOCK = 1213
DEADLOCK_ATTEMPTS = 4
# Victims wait a random moment (up to this, times the attempt) so they do not collide again in step.
DEADLOCK_BACKOFF_SECS = 0.02
_WROTE = "va_wrote"  # set in a sync session's info while its transaction has written something
T = TypeVar("T")


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10, pool_recycle_secs: int = 1800) -> AsyncEngine:
    """An engine configured for the backend the URL names."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "mysql" and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return create_async_engine(
        parsed,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        # A MariaDB restart or wait_timeout leaves dead connections in the pool:
        # pre-ping replaces them, recycle retires them before the server does.
        pool_pre_ping=True,
        pool_recycle=pool_recycle_secs,
    )


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


class _WriteTrackingSession(SyncSession):
    """Knows whether its current transaction has written anything (flushed objects or DML)."""


@event.listens_for(_WriteTrackingSession, "do_orm_execute")
def _note_statement(state: Any) -> None:
    if not state.is_select:
        state.session.info[_WROTE] = True


@event.listens_for(_WriteTrackingSession, "after_flush")
def _note_flush(session: SyncSession, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(_WriteTrackingSession, "after_transaction_end")
def _transaction_ended(session: SyncSession, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # the outermost one: its writes are committed or gone
        session.info.pop(_WROTE, None)


class Session(AsyncSession):
    """An AsyncSession whose reads survive a connection that dies mid-query (killed, server restarted):
    a SELECT (or ``get``) is run once more on a fresh connection when the transaction has written
    nothing, so repeating it loses nothing. Objects loaded before keep their values (as after close)."""

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._read(isinstance(statement, Select), super().execute, statement, *args, **kwargs)

    async def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._read(isinstance(statement, Select), super().scalar, statement, *args, **kwargs)

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        return await self._read(True, super().get, *args, **kwargs)

    async def _read(self, is_read: bool, call: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        try:
            return await call(*args, **kwargs)
        except DBAPIError as exc:
            if not (exc.connection_invalidated and is_read and not self.sync_session.info.get(_WROTE)):
                raise
            log.warning("a read lost its database connection (%s); running it again on a fresh one", exc.orig)
        self.expunge_all()  # loaded objects stay readable; the rollback would otherwise expire them
        await self.rollback()
        return await call(*args, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[Session]:
    return async_sessionmaker(engine, class_=Session, sync_session_class=_WriteTrackingSession,
                              expire_on_commit=False)


def is_deadlock(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) and getattr(exc.orig, "args", (None,))[:1] == (MYSQL_DEADLOCK,)


async def run_transaction(sessions: async_sessionmaker[Any], work: Callable[[Any], Awaitable[T]],
                          *, attempts: int = DEADLOCK_ATTEMPTS) -> T:
    """``work(session)`` (which commits) in a new session; run again when chosen as a deadlock victim.

    The database rolled the victim back whole, so running it again from the start is safe; ``work``
    must not have effects outside the database before it commits.
    """
    attempt = 1
    while True:
        try:
            async with sessions() as db:
                return await work(db)
        except OperationalError as exc:
            if not is_deadlock(exc) or attempt >= attempts:
                raise
            log.info("deadlock victim (attempt %d of %d); running the transaction again", attempt, attempts)
        await asyncio.sleep(random.uniform(0, DEADLOCK_BACKOFF_SECS * attempt))
        attempt += 1


async def ping(engine: AsyncEngine) -> None:
    """Raise if the database does not answer."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
