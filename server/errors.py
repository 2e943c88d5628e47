"""Domain errors. Services raise these; one place maps them to HTTP statuses."""

from __future__ import annotations

import asyncio
from typing import Any

# What a request or a socket must let through: the process stopping, a task cancelled, a generator closed.
# Every other BaseException is that one request's failure, answered like any error: a native library's
# panic among them (PyO3's PanicException derives from BaseException, which Tornado does not catch).
NOT_REQUEST_FAILURES = (KeyboardInterrupt, SystemExit, asyncio.CancelledError, GeneratorExit)


class AppError(Exception):
    """An error a client caused or may act on; ``code`` is stable, ``message`` is for people."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None,
                 data: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}
        # Structured detail a client acts on, carried the same way over HTTP and the socket:
        # `field` (which input), `retry_after` (seconds), limits (`limit`, `max_bytes`, ...).
        self.data = data or {}

    def to_json(self) -> dict[str, Any]:
        """``{code, message}``, with ``data`` when there is any: the error object of HTTP bodies and socket frames."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data:
            body["data"] = self.data
        return body


class InvalidInput(AppError):
    code = "invalid_input"
    status = 400


class Unauthenticated(AppError):
    code = "unauthenticated"
    status = 401


class InvalidCredentials(AppError):
    code = "invalid_credentials"
    status = 401


class Forbidden(AppError):
    code = "forbidden"
    status = 403


class NotFound(AppError):
    code = "not_found"
    status = 404


class Conflict(AppError):
    code = "conflict"
    status = 409


class Gone(AppError):
    code = "gone"
    status = 410


class PayloadTooLarge(AppError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(AppError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(AppError):
    code = "rate_limited"
    status = 429

    def __init__(self, message: str, *, retry_after_secs: int, code: str | None = None):
        retry_after = max(1, retry_after_secs)
        super().__init__(message, code=code, headers={"Retry-After": str(retry_after)},
                         data={"retry_after": retry_after})
        self.retry_after_secs = retry_after_secs


class Unavailable(AppError):
    code = "unavailable"
    status = 503
