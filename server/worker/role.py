"""A worker attached to a runtime: builds the engine and the kinds, runs the job loop, stops it first."""

from __future__ import annotations

from inference.engine import Engine, EngineConfig
from inference.metrics import register_engine_metrics
from inference.models import ModelRegistry
from inference.screening import PromptScreen
from server.runtime import Runtime
from server.worker.art import ArtKind
from server.worker.generation import GenerationKind
from server.worker.runner import JobRunner


class WorkerRole:
    def __init__(self, runtime: Runtime, engine: Engine, runner: JobRunner):
        self.runtime = runtime
        self.engine = engine
        self.runner = runner

    @classmethod
    async def start(cls, runtime: Runtime, *, engine_config: EngineConfig | None = None) -> "WorkerRole":
        """Start taking jobs; the runtime stops this role first when it closes."""
        settings = runtime.settings
        config = engine_config or EngineConfig(
            preview_fps=settings.preview_fps,
            device_budget_bytes=_mib(settings.worker_device_budget_mib),
            host_budget_bytes=_mib(settings.worker_host_budget_mib))
        screen = PromptScreen.load(settings.screening_terms_dir)
        engine = Engine(ModelRegistry(settings.models_dir), config, screen=screen).start()
        register_engine_metrics(engine, runtime.registry)
        runner = JobRunner(queue=runtime.jobs.queue, records=runtime.jobs.records, hub=runtime.hub,
                           blobs=runtime.blobs, executors=runtime.executors, settings=settings,
                           kinds=[GenerationKind(engine), ArtKind(runtime.cache, settings)],
                           devices=engine.devices, slots=len(engine.workers))
        role = cls(runtime, engine, runner)
        runtime.add_closer(role.stop)  # before it starts: a failed start still stops the engine's threads
        await runner.start()
        return role

    async def stop(self, grace_secs: float | None = None) -> None:
        """Finish (or, past the grace, hand back) the running jobs; take no new ones."""
        await self.runner.stop(self.runtime.settings.worker_stop_grace_secs if grace_secs is None else grace_secs)


def _mib(value: int | None) -> int | None:
    return None if value is None else value * 1024 * 1024
