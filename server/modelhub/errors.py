"""The hub's domain errors, beside the shared ones in ``server.errors``."""

from __future__ import annotations

from server.errors import AppError


class InvalidModelFile(AppError):
    """The bytes are not a well-formed .safetensors file; the message says exactly why."""

    code = "invalid_model_file"
    status = 422


class PickleRefused(AppError):
    code = "pickle_refused"
    status = 415


class RangeNotSatisfiable(AppError):
    code = "range_not_satisfiable"
    status = 416


class UploadOffsetMismatch(AppError):
    code = "offset_mismatch"
    status = 409
