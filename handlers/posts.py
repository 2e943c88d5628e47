"""The community: posts, gallery, likes, follows, notifications and reports."""

from __future__ import annotations

default_handlers: list = []
