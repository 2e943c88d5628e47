"""The art studio's style and preset names, without OpenCV (web processes validate with these)."""

from __future__ import annotations

STYLES = ("pencil", "colour_pencil", "oil", "watercolour")
PRESET_NAMES = ("fast", "quality")
# An art job names no model; its jobs carry this one, so queues and histories treat it like any other.
ART_MODEL = "opencv"
