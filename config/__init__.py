"""Typed settings for Visionary Art, built once at start-up."""

from config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
