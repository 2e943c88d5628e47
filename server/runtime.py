"""The running service's parts, built once from settings and closed together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import redis.asyncio as redis
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from inference.models import ModelRegistry
from inference.screening import PromptScreen
from server.a1111 import A1111Service
from server.auth import AuthService
from server.blobs import BlobStore
from server.cache import Cache, MemoryCache, RedisCache
from server.chat import ChatService
from server.collab.service import CollabService
from server.community import Community, build_community
from server.credential_watch import announce_change
from server.discord import DiscordService
from server.executors import Executors
from server.hub import Hub, MemoryHub, RedisHub
from server.jobs import JobService
from server.jobs.kinds import JobKinds
from server.jobs.memory_queue import MemoryJobQueue
from server.jobs.metrics import QueueCollector
from server.jobs.queue import JobQueue
from server.jobs.records import JobRecords
from server.jobs.redis_queue import RedisJobQueue
from server.jobs.stylize import StylizeParser
from server.live import LiveService
from server.metrics import HttpMetrics
from server.modelhub.service import ModelHub
from server.originals import Originals
from server.presets import PresetService
from server.principal_mirror import PrincipalMirror
from server.shares import ShareService
from server.passwords import Passwords
from server.presence import MemoryPresence, Presence, RedisPresence
from server.principals import PrincipalCache, journal_for
from server.ratelimit import LIMITER_MEMORY_ENTRIES, RateLimiter
from server.realtime import CLOSE_GOING_AWAY, Connection, Flusher
from server.room_imagine import RoomImagine
from server.room_stylize import RoomStylize
from server.room_sockets import wire_rooms
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
    community: Community
    collab: CollabService
    modelhub: ModelHub
    presets: PresetService
    shares: ShareService
    live: LiveService
    a1111: A1111Service
    imagine: RoomImagine
    room_stylize: RoomStylize = field(init=False)  # built on the room settings (`imagine`)
    discord: DiscordService
    # Open socket connections, so shutdown can close them, and tasks to finish before closing.
    connections: set[Connection] = field(default_factory=set)
    background: set = field(default_factory=set)
    # Roles attached to this runtime (a worker), stopped first on close.
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    flusher: Flusher = field(default_factory=Flusher)
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    http_metrics: HttpMetrics = field(init=False)
    queue_metrics: QueueCollector = field(init=False)

    def __post_init__(self) -> None:
        self.http_metrics = HttpMetrics(self.registry)
        self.queue_metrics = QueueCollector(self.jobs.queue, self.registry)

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
        cache: Cache = (RedisCache(client, settings.redis_prefix) if client
                        else MemoryCache(max_bytes=settings.memory_cache_max_bytes))
        executors = Executors.create(settings.io_threads, settings.cpu_threads)
        passwords = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism)
        db = database.session_factory(engine)
        blobs = BlobStore(settings.blobs_dir)
        # Counters in a store of their own: in-process, a flood of cached pages would evict them.
        limiter = RateLimiter(RedisCache(client, settings.redis_prefix, "limits:") if client
                              else MemoryCache(max_entries=LIMITER_MEMORY_ENTRIES))
        mirror = None
        if client is not None:
            redis_hub = await RedisHub(client, settings.redis_prefix).start()
            hub: Hub = redis_hub
            presence: Presence = RedisPresence(client, settings.redis_prefix)
            mirror = PrincipalMirror(redis_hub)
            await mirror.start()
        else:
            hub, presence = MemoryHub(), MemoryPresence()
        principals = PrincipalCache(cache, db, journal_for(settings.effective_database_url, client is not None),
                                    mirror)
        chat = ChatService(db, hub, presence, limiter, settings)
        topics = TopicPolicy()
        topics.register("user", own_user_topic)
        wire_rooms(topics, chat)
        queue: JobQueue = (RedisJobQueue(client, settings.redis_prefix, heartbeat_secs=settings.worker_heartbeat_secs)
                           if client is not None else MemoryJobQueue())
        await queue.start()
        screen = PromptScreen.load(settings.screening_terms_dir)
        registry = ModelRegistry(settings.models_dir)
        records = JobRecords(db)
        presets = PresetService(db, registry, blobs, executors)
        stylize = StylizeParser(presets, records, screen, executors, settings)
        kinds = JobKinds(registry, screen, executors, settings, stylize=stylize)
        jobs = JobService(records, queue, kinds, hub, blobs, executors, settings)
        originals = Originals(blobs, executors)
        jobs.wire(topics)
        live = LiveService(db, hub, jobs, tile_fps=settings.live_tile_fps)
        live.wire(topics)
        collab = CollabService(db, hub, limiter, executors, jobs, settings)
        collab.wire(topics, jobs)
        auth = AuthService(db, passwords, limiter, executors, settings, principals)
        auth.on_sessions_revoked = lambda ids: _close_sockets_of(hub, ids)
        principals.listeners.append(lambda user_id: announce_change(hub, user_id))
        principals.start()
        runtime = cls(
            settings=settings, engine=engine, db=db, redis=client, cache=cache, limiter=limiter, blobs=blobs,
            executors=executors,
            users=UserService(db, passwords, blobs, executors, settings, principals, limiter),
            auth=auth,
            tokens=TokenService(db, principals),
            hub=hub, presence=presence, chat=chat, topics=topics, jobs=jobs,
            community=build_community(db, cache, hub, chat, jobs,
                                      gallery_cache_ttl_secs=settings.gallery_cache_ttl_secs, originals=originals),
            collab=collab,
            modelhub=ModelHub.build(settings, db, cache, client, blobs, executors).start(),
            presets=presets, shares=ShareService(db, originals), live=live,
            a1111=A1111Service(jobs, hub, db, executors),
            imagine=RoomImagine(db, chat, jobs, hub, settings),
            discord=DiscordService(settings, db, cache, hub, jobs, presets),
        )
        runtime.imagine.wire()
        runtime.room_stylize = RoomStylize(chat, runtime.imagine, jobs, stylize, blobs, executors, cache, limiter)
        runtime.room_stylize.wire()
        runtime.modelhub.wire(runtime.community.moderation)
        runtime.shares.wire(jobs, runtime.community.posts)
        return runtime

    def add_closer(self, close: Callable[[], Awaitable[None]]) -> None:
        """Stop an attached role (a worker) before the runtime's own parts close."""
        self.closers.append(close)

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
        for close in reversed(self.closers):
            await close()
        self.flusher.flush_now()  # what the roles said last (a job handed back) reaches the sockets first
        for connection in list(self.connections):
            connection.shutdown(CLOSE_GOING_AWAY, "server shutting down")
            self.spawn(connection.close())  # leaves its topics (the transport's own close may come later)
        self.connections.clear()
        if self.background:
            await asyncio.gather(*self.background, return_exceptions=True)
        await self.discord.close()
        await self.auth.close()
        await self.jobs.queue.close()
        await self.collab.close_all()
        await self.live.close()
        await self.modelhub.close()
        await self.hub.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.engine.dispose()
        self.executors.shutdown()


async def _close_sockets_of(hub: Hub, session_ids: list[str]) -> None:
    """Tell every process to close the sockets of revoked sessions."""
    for session_id in session_ids:
        await hub.publish(f"session:{session_id}", {"type": "session.revoked"}, sequenced=False)
