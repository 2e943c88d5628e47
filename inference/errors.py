"""Errors the engine raises. The web layer maps `code` to its own error envelope."""

from __future__ import annotations


class InferenceError(Exception):
    """Base of everything the engine raises on purpose; `code` is stable, the message is for people."""

    code = "inference_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidRequest(InferenceError, ValueError):
    """A request refused before any worker sees it (diffusers `check_inputs` style)."""

    code = "invalid_request"

    def __init__(self, message: str, *, code: str = "invalid_request", field: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class UnknownModel(InvalidRequest):
    code = "unknown_model"

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unknown_model", field="model")


class ModelLoadError(InferenceError):
    """A model on disk could not be loaded (missing files, pickle-only weights, unknown family)."""

    code = "model_load_failed"


class CacheFull(InferenceError):
    """Pinned models leave no room for another within the byte budget."""

    code = "model_cache_full"


class GenerationFailed(InferenceError):
    """A job failed while running; the worker that ran it keeps serving."""

    code = "generation_failed"


class GenerationCancelled(InferenceError):
    """The job was cancelled before it finished."""

    code = "cancelled"
