"""The community's tables: posts, likes, follows, notifications and reports."""

from __future__ import annotations
