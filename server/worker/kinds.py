"""What a worker needs to know of a kind of job: how to run one, stop one, and what it has loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Protocol

from inference.events import GeneratedImage as ProducedImage
from inference.events import JobEvent
from server.store.models import GeneratedImage, GenerationJob


@dataclass
class JobContext:
    """One run of one job on this worker, as a kind runner sees it."""

    job: GenerationJob
    attempt: int
    settings: dict[str, Any]
    input_image: bytes | None
    # Publish an event on job:<id>, after every earlier one of this job (engine events or protocol maps).
    emit: Callable[[JobEvent | dict[str, Any]], None]
    # Store one image of the job now (a result shown as soon as it is ready; its WebP thumbnail when the kind
    # made one already), or one over blobs stored before (a cache hit); None once the job is not ours.
    store_image: Callable[[ProducedImage, bytes | None], Awaitable[GeneratedImage | None]]
    reuse_image: Callable[["StoredImage"], Awaitable[GeneratedImage | None]]
    input_mask: bytes | None = None  # an inpainting job's mask (a blob beside the input image)


@dataclass(frozen=True)
class StoredImage:
    """An image whose PNG and thumbnail are in the blob store already (content-addressed)."""

    png_sha256: str
    thumb_sha256: str
    width: int
    height: int
    seed: int
    parameters: str


@dataclass
class Outcome:
    status: Literal["done", "failed", "cancelled"]
    images: list[ProducedImage] = field(default_factory=list)  # stored with the outcome, in one transaction
    timings: dict[str, float] = field(default_factory=dict)
    error: tuple[str, str] | None = None
    step: int = 0  # steps run, for a cancelled job
    # Extra fields of the final event (gen.done: seed, cached, images with their style...).
    event: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed(cls, code: str, message: str) -> "Outcome":
        return cls("failed", error=(code, message))


class KindRunner(Protocol):
    kinds: tuple[str, ...]

    def loaded_models(self) -> set[str]:
        """Models ready without loading (the queue prefers their jobs for this worker)."""

    async def run(self, context: JobContext) -> Outcome: ...

    def stop(self, job_id: str, keep: bool = False) -> None:
        """Cancel a running job cooperatively (it ends with a `cancelled` outcome).

        `keep`: a kind that can may instead end it as done with what it made so far (A1111's interrupt).
        """

    async def close(self) -> None: ...
