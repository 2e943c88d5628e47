"""Events a job reports, delivered on the event loop through the `on_event` callback.

`to_message()` gives the protocol map (`gen.started`, `gen.progress`, ...) minus the
topic and seq the hub adds; preview images stay raw bytes for msgpack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class GeneratedImage:
    png: bytes = field(repr=False)
    width: int
    height: int
    seed: int
    parameters: str  # the A1111 `parameters` text also stored in the PNG


@dataclass(frozen=True)
class ControlOut:
    """The control image one ControlNet unit saw (what its preprocessor made), to show the user."""

    unit: int  # index in the request's `controls`
    model: str
    preprocessor: str
    png: bytes = field(repr=False)
    width: int
    height: int

    def to_message(self) -> dict[str, Any]:
        return {"unit": self.unit, "model": self.model, "preprocessor": self.preprocessor, "mime": "image/png",
                "width": self.width, "height": self.height, "image": self.png}


@dataclass(frozen=True)
class JobResult:
    job: str
    model: str
    images: list[GeneratedImage]
    timings: dict[str, float]
    control_images: list[ControlOut] = field(default_factory=list)  # one per ControlNet unit, in order


@dataclass(frozen=True)
class JobEvent:
    type: ClassVar[str] = "event"
    job: str

    def to_message(self) -> dict[str, Any]:
        return {"type": f"gen.{self.type}", "job": self.job}


@dataclass(frozen=True)
class Started(JobEvent):
    type: ClassVar[str] = "started"
    model: str = ""

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "model": self.model}


@dataclass(frozen=True)
class Progress(JobEvent):
    type: ClassVar[str] = "progress"
    step: int = 0
    total: int = 0
    at: float = 0.0  # wall-clock time of the step callback, for end-to-end latency

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "step": self.step, "total": self.total, "at": self.at}


@dataclass(frozen=True)
class Preview(JobEvent):
    type: ClassVar[str] = "preview"
    step: int = 0
    total: int = 0
    mime: str = "image/webp"
    image: bytes = field(default=b"", repr=False)
    at: float = 0.0  # wall-clock time of the step callback that produced the frame

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "step": self.step, "total": self.total, "mime": self.mime,
                "image": self.image, "at": self.at}


@dataclass(frozen=True)
class ControlImages(JobEvent):
    """The control images of a ControlNet job, made before its first step (so they show while it runs)."""

    type: ClassVar[str] = "control"
    images: list[ControlOut] = field(default_factory=list)

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "images": [image.to_message() for image in self.images]}


@dataclass(frozen=True)
class Done(JobEvent):
    type: ClassVar[str] = "done"
    result: JobResult | None = None

    def to_message(self) -> dict[str, Any]:
        images = self.result.images if self.result else []
        return {
            **super().to_message(),
            "images": [{"width": i.width, "height": i.height, "seed": i.seed} for i in images],
            "timings": self.result.timings if self.result else {},
        }


@dataclass(frozen=True)
class Failed(JobEvent):
    type: ClassVar[str] = "error"
    code: str = "generation_failed"
    message: str = ""

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Cancelled(JobEvent):
    type: ClassVar[str] = "cancelled"
    step: int = 0  # steps that had run when the job stopped
    requested_at_step: int = 0  # steps that had run when cancel() was called

    def to_message(self) -> dict[str, Any]:
        return {**super().to_message(), "step": self.step}
