"""Collaborative prompt sessions: members, persisted CRDT updates and renders."""

from __future__ import annotations
