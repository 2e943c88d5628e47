"""The model hub: models, versions, uploads (tus and PUT) and downloads (also Hugging Face-compatible)."""

from __future__ import annotations

default_handlers: list = []
