"""The model hub's tables: models, their versions and files, and uploads in progress."""

from __future__ import annotations
