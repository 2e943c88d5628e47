"""The schema and migrations on both databases."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select, text

from server.store.migrations import pending_revisions
from server.store.models import User
from server.store.schema import metadata
from tests.support.backends import kill_mariadb_connections


async def test_migrations_match_the_models(runtime):
    assert await pending_revisions(runtime.engine) == []

    def diff(sync_conn):
        return compare_metadata(MigrationContext.configure(sync_conn), metadata)

    async with runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_four_byte_characters_round_trip(runtime):
    bio = "画一只猫 🐱🎨 — naïve ​ 𝕏"
    async with runtime.db() as db:
        db.add(User(username="emoji", password_hash="x", display_name="🦊 狐狸", bio=bio))
        await db.commit()
    async with runtime.db() as db:
        user = await db.scalar(select(User).where(User.username == "emoji"))
    assert user.bio == bio and user.display_name == "🦊 狐狸"


async def test_service_survives_dropped_database_connections(runtime, backend):
    """A MariaDB restart or wait_timeout kills pooled connections; pre-ping replaces them."""
    if not backend.services:
        pytest.skip("connection killing is a MariaDB scenario")
    async with runtime.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
    database = runtime.engine.url.database
    assert kill_mariadb_connections(database) >= 1
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(text("SELECT 1"))).scalar() == 1
