"""Database faults survived without a 500, on real MariaDB: a read whose connection is killed mid-query
runs again on a fresh connection (only when its transaction wrote nothing), and a deadlock victim's
transaction runs again."""

import asyncio

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from server.store.database import create_engine, run_transaction, session_factory
from tests.support.backends import kill_mariadb_connections, mariadb_database, require_services

pytestmark = pytest.mark.services


@pytest.fixture
async def sessions():
    require_services()
    with mariadb_database() as url:
        engine = create_engine(url, pool_size=4)
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE counters (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB"))
            await conn.execute(text("INSERT INTO counters VALUES (1, 0), (2, 0)"))
        try:
            yield session_factory(engine), engine.url.database
        finally:
            await engine.dispose()


async def kill_soon(database: str, delay_secs: float = 0.5) -> int:
    await asyncio.sleep(delay_secs)
    return await asyncio.to_thread(kill_mariadb_connections, database)


async def test_a_read_cut_mid_query_runs_again_on_a_fresh_connection(sessions):
    factory, database = sessions
    async with factory() as db:
        assert await db.scalar(select(func.count()).select_from(text("counters"))) == 2  # a row loaded first
        killer = asyncio.ensure_future(kill_soon(database))
        # SLEEP(2) is cut after 0.5 s; the read runs once more on a new connection and answers.
        assert await db.scalar(select(func.sleep(2))) == 0
        assert await killer >= 1


async def test_a_read_after_a_write_is_not_repeated(sessions):
    factory, database = sessions
    async with factory() as db:
        await db.execute(text("UPDATE counters SET n = n + 1 WHERE id = 1"))
        killer = asyncio.ensure_future(kill_soon(database))
        with pytest.raises(DBAPIError):  # repeating it on a new connection would silently drop the update
            await db.scalar(select(func.sleep(2)))
        await killer
    async with factory() as db:
        assert await db.scalar(text("SELECT n FROM counters WHERE id = 1")) == 0


async def test_a_deadlock_victim_runs_again(sessions):
    factory, _ = sessions

    def crossing(first: int, second: int):
        async def work(db) -> None:
            await db.execute(text("UPDATE counters SET n = n + 1 WHERE id = :id"), {"id": first})
            await asyncio.sleep(0.3)  # both hold their first row now: one of them is the victim
            await db.execute(text("UPDATE counters SET n = n + 1 WHERE id = :id"), {"id": second})
            await db.commit()
        return work

    await asyncio.gather(run_transaction(factory, crossing(1, 2)), run_transaction(factory, crossing(2, 1)))
    async with factory() as db:
        assert (await db.execute(text("SELECT n FROM counters ORDER BY id"))).scalars().all() == [2, 2]
