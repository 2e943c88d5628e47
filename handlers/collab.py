"""Collaborative prompt sessions: create, invite, members, renders."""

from __future__ import annotations

default_handlers: list = []
