"""The running service's parts, built once from settings and closed together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from inference.engine import Engine, EngineConfig
from inference.metrics import register_engine_metrics
from inference.models import ModelRegistry
from inference.screening import PromptScreen
from server.art import ArtService
from server.auth import AuthService
from server.blobs import BlobStore
from server.cache import Cache, MemoryCache, RedisCache
from server.chat import ChatService
from server.collab.service import CollabService
from server.community import Community, build_community
from server.executors import Executors
from server.hub import Hub, MemoryHub, RedisHub
from server.jobs import JobService
from server.metrics import HttpMetrics
from server.moderation import Target
from server.modelhub.service import ModelHub
from server.passwords import Passwords
from server.presence import MemoryPresence, Presence, RedisPresence
from server.principals import PrincipalCache
from server.ratelimit import RateLimiter
from server.realtime import Flusher
from server import redis_client
from server.store import database
from server.store.migrations import pending_revisions, upgrade_to_head
from server.tokens import TokenService
from server.topics import TopicPolicy, own_user_topic
from server.users import UserService

log = logging.getLogger(__name__)

# Readiness probes must answer fast; a dependency slower than this counts as down.
READINESS_TIMEOUT_SECS = 2.0


class MigrationsPending(RuntimeError):
    pass


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]
    redis: redis.Redis | None
    cache: Cache
    limiter: RateLimiter
    blobs: BlobStore
    executors: Executors
    users: UserService
    auth: AuthService
    tokens: TokenService
    hub: Hub
    presence: Presence
    chat: ChatService
    topics: TopicPolicy
    jobs: JobService
    art: ArtService
    community: Community
    collab: CollabService
    modelhub: ModelHub
    # Open WebSocket handlers, so shutdown can close them, and tasks to finish before closing.
    sockets: set = field(default_factory=set)
    background: set = field(default_factory=set)
    flusher: Flusher = field(default_factory=Flusher)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    http_metrics: HttpMetrics = field(init=False)

    def __post_init__(self) -> None:
        self.http_metrics = HttpMetrics(self.registry)

    @property
    def embedded(self) -> bool:
        return self.redis is None and make_url(self.settings.effective_database_url).get_backend_name() == "sqlite"

    @classmethod
    async def start(cls, settings: Settings, *, migrate: bool | None = None) -> "Runtime":
        """Connect to storage and build the services.

        ``migrate=None`` applies pending migrations only in the embedded mode:
        scaled out, several web processes would race, so ``run.py migrate`` does it once.
        """
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = database.create_engine(
            settings.effective_database_url, echo=settings.database_echo,
            pool_size=settings.database_pool_size, pool_recycle_secs=settings.database_pool_recycle_secs,
        )
        is_sqlite = engine.url.get_backend_name() == "sqlite"
        if migrate or (migrate is None and is_sqlite):
            await upgrade_to_head(engine)
        else:
            pending = await pending_revisions(engine)
            if pending:
                await engine.dispose()
                raise MigrationsPending(
                    f"The database lacks migrations {', '.join(pending)}; run `python run.py migrate` first."
                )
        client = redis_client.connect(settings.redis_url) if settings.redis_url else None
        cache: Cache = RedisCache(client, settings.redis_prefix) if client else MemoryCache()
        executors = Executors.create(settings.io_threads, settings.cpu_threads)
        passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
        db = database.session_factory(engine)
        blobs = BlobStore(settings.blobs_dir)
        limiter = RateLimiter(cache)
        principals = PrincipalCache(cache, db)
        if client is not None:
            hub: Hub = await RedisHub(client, settings.redis_prefix).start()
            presence: Presence = RedisPresence(client, settings.redis_prefix)
        else:
            hub, presence = MemoryHub(), MemoryPresence()
        chat = ChatService(db, hub, presence, limiter, send_limit=settings.chat_send_limit,
                           send_window_secs=settings.chat_send_window_secs)
        topics = TopicPolicy()
        topics.register("room", chat.may_read)
        topics.register("user", own_user_topic)
        inference_engine = None
        if settings.inference_enabled:
            registry = ModelRegistry(settings.models_dir)
            inference_engine = Engine(registry, EngineConfig(preview_fps=settings.preview_fps),
                                      screen=PromptScreen.from_file()).start()
        jobs = JobService(db, hub, blobs, executors, inference_engine, settings)
        topics.register("job", jobs.may_watch)
        collab = CollabService(db, hub, limiter, executors, jobs, settings)
        topics.register("collab", collab.may_watch)
        jobs.add_watch_grant(collab.may_watch_job)
        auth = AuthService(db, passwords, limiter, executors, settings, principals)
        auth.on_sessions_revoked = lambda ids: _close_sockets_of(hub, ids)
        runtime = cls(
            settings=settings, engine=engine, db=db, redis=client, cache=cache, limiter=limiter, blobs=blobs,
            executors=executors,
            users=UserService(db, passwords, blobs, executors, settings, principals),
            auth=auth,
            tokens=TokenService(db, principals),
            hub=hub, presence=presence, chat=chat, topics=topics, jobs=jobs,
            art=ArtService(db, hub, blobs, cache, executors, settings),
            community=build_community(db, cache, hub, chat, jobs,
                                      gallery_cache_ttl_secs=settings.gallery_cache_ttl_secs),
            collab=collab,
            modelhub=ModelHub.build(settings, db, cache, client, blobs, executors).start(),
        )
        catalog = runtime.modelhub.catalog
        runtime.community.moderation.register("model", Target(set_hidden=catalog.set_hidden, describe=catalog.describe))
        if inference_engine is not None:
            register_engine_metrics(inference_engine, runtime.registry)
        await jobs.start()
        return runtime

    async def readiness(self) -> dict[str, str]:
        """'ok' or the error for each dependency."""
        checks = {"database": database.ping(self.engine)}
        if self.redis is not None:
            checks["redis"] = self.redis.ping()
        results = {}
        for name, check in checks.items():
            try:
                await asyncio.wait_for(check, READINESS_TIMEOUT_SECS)
                results[name] = "ok"
            except Exception as exc:  # any failure means not ready; the reason is reported
                results[name] = f"error: {type(exc).__name__}"
        return results

    def spawn(self, coroutine: Any) -> None:
        """Run a task the runtime waits for on shutdown (e.g. a closed socket leaving its rooms)."""
        task = asyncio.ensure_future(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def close(self) -> None:
        for socket in list(self.sockets):
            socket.close(1001, "server shutting down")
            socket.on_close()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.jobs.close()
        await self.art.close()
        await self.collab.close_all()
        await self.modelhub.close()
        if self.jobs.engine is not None:
            await self.jobs.engine.aclose()
        await self.hub.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
        self.executors.shutdown()


async def _close_sockets_of(hub: Hub, session_ids: list[str]) -> None:
    """Tell every process to close the sockets of revoked sessions."""
    for session_id in session_ids:
        await hub.publish(f"session:{session_id}", {"type": "session.revoked"}, sequenced=False)
