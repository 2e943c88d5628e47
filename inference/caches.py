"""Small LRU + TTL caches for intermediate tensors, kept on the CPU.

Three are used by the pipelines: text-encoder outputs keyed by (model, prompt, negative
prompt, clip skip), img2img init latents keyed by (model VAE, sha256 of the init image,
size), and decoded photos and ControlNet control images keyed by (sha256 of the image,
preprocessor and its parameters, size). Both are bounded by entry count and by bytes, expire after a TTL, and
count hits and misses. Values live on the CPU so they never compete with models for
VRAM; moving a few hundred kilobytes to the GPU costs far less than recomputing them.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Generic, Hashable, TypeVar

import torch

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_TEXT_CACHE_ENTRIES = 256
DEFAULT_LATENT_CACHE_ENTRIES = 64
# Decoded photos and ControlNet control images (a 1024 px SDXL one is 3 MiB): a few styles of a few photos.
DEFAULT_CONTROL_CACHE_ENTRIES = 64
DEFAULT_CACHE_TTL_SECS = 30 * 60  # a prompt session lasts minutes; stale entries free memory
DEFAULT_CACHE_MAX_BYTES = 256 * 1024**2


def tensor_bytes(value: Any) -> int:
    """Bytes held by the tensors in a (possibly nested) value."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (tuple, list)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    return 0


def to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, tuple):
        return tuple(to_cpu(v) for v in value)
    if isinstance(value, list):
        return [to_cpu(v) for v in value]
    return value


@dataclass
class _Entry(Generic[V]):
    value: V
    size: int
    expires: float


class TTLCache(Generic[K, V]):
    """Thread-safe LRU bounded by entries and bytes, with a time-to-live per entry."""

    def __init__(
        self,
        max_entries: int,
        *,
        ttl_s: float = DEFAULT_CACHE_TTL_SECS,
        max_bytes: int = DEFAULT_CACHE_MAX_BYTES,
        size_of: Callable[[Any], int] = tensor_bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_entries, self.ttl_s, self.max_bytes = max_entries, ttl_s, max_bytes
        self._size_of, self._clock = size_of, clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.expirations = 0
        self.bytes = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.expires <= self._clock():
                self._drop(key)
                self.expirations += 1
                entry = None
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        if size > self.max_bytes or self.max_entries <= 0:
            return  # larger than the whole cache: never worth evicting everything for
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(value, size, self._clock() + self.ttl_s)
            self.bytes += size
            while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
                oldest = next(iter(self._entries))
                self._drop(oldest)
                self.evictions += 1

    def _drop(self, key: K) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "entries": len(self._entries),
                "bytes": self.bytes,
                "evictions": self.evictions,
                "expirations": self.expirations,
            }
