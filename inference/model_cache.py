"""A model cache bounded in bytes, with a device tier (VRAM) and a host tier (RAM).

* Least recently used first; bounded by bytes, never by entry count.
* A model in use by a running job is pinned (`use()` holds the pin) and never evicted.
* Making room on the device demotes the LRU unpinned model to the host tier; only what
  does not fit there is dropped. A request for a host-tier model promotes it back.
* A load that cannot fit (larger than the budget, or pinned models fill it) raises
  `CacheFull` for that job alone instead of over-committing memory -- the crash our
  predecessors hit when many requests switched models under load.

On a CPU-only machine both tiers are the same memory; the default host budget is then 0,
so eviction drops instead of copying a model from RAM to RAM.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterator, Literal

import torch

from inference.errors import CacheFull

log = logging.getLogger(__name__)

Tier = Literal["device", "host"]
HOST = "cpu"
# VRAM left outside the budget for activations, the VAE decode at 2048 px and the
# CUDA context: a quarter of the card.
DEVICE_BUDGET_FRACTION = 0.75
HOST_BUDGET_FRACTION = 0.4  # of physical RAM, shared by the workers of one process
CPU_DEVICE_BUDGET_FRACTION = 0.5


# cgroup v2's memory limit of this container ("max" when unlimited); a pod's limit, not the node's RAM,
# is what the kernel kills a worker at.
CGROUP_MEMORY_MAX = "/sys/fs/cgroup/memory.max"


def physical_ram_bytes() -> int:
    """The memory this process may use: the machine's RAM, or its container's limit when lower."""
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open(CGROUP_MEMORY_MAX) as f:
            limit = f.read().strip()
    except OSError:
        return ram
    return min(ram, int(limit)) if limit.isdigit() else ram


def default_budgets(device: str, workers: int = 1) -> tuple[int, int]:
    """(device budget, host budget) in bytes for one worker on `device`."""
    ram = physical_ram_bytes()
    if device.startswith("cuda"):
        total = torch.cuda.get_device_properties(torch.device(device)).total_memory
        return int(total * DEVICE_BUDGET_FRACTION), int(ram * HOST_BUDGET_FRACTION / max(workers, 1))
    return int(ram * CPU_DEVICE_BUDGET_FRACTION / max(workers, 1)), 0


@dataclass
class _Entry:
    name: str
    model: Any
    size: int
    tier: Tier
    pins: int = 0


class ModelCache:
    """Loads models through `load(name)` and keeps them within two byte budgets.

    `load` returns a model in host memory; `size_of(model)` gives its bytes;
    `move(model, device)` places it. One worker thread uses a cache; `stats()` may be
    read from any thread.
    """

    def __init__(
        self,
        load: Callable[[str], Any],
        *,
        device: str,
        device_budget_bytes: int,
        host_budget_bytes: int,
        size_of: Callable[[Any], int],
        move: Callable[[Any, str], None],
        collect_garbage: bool = True,
    ) -> None:
        self.device = device
        self.device_budget = int(device_budget_bytes)
        self.host_budget = int(host_budget_bytes)
        self._load, self._size_of, self._move = load, size_of, move
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # LRU first
        self._lock = threading.RLock()
        self.hits = {"device": 0, "host": 0}
        self.misses = 0
        self.evictions = 0
        self.demotions = 0
        self.promotions = 0
        self.loads = 0
        self.load_seconds = 0.0
        self.last_load_seconds = 0.0
        self.peak_bytes = {"device": 0, "host": 0}
        self._dropped_since_release = False
        self._collect_garbage = collect_garbage

    # ---- public ---------------------------------------------------------------------

    @contextmanager
    def use(self, name: str) -> Iterator[Any]:
        """Pin `name` on the device for the duration of the block, loading it if needed."""
        entry = self._acquire(name)
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.pins -= 1

    def bytes_in(self, tier: Tier) -> int:
        with self._lock:
            return sum(e.size for e in self._entries.values() if e.tier == tier)

    def resident(self) -> dict[str, Tier]:
        """name -> tier, least recently used first."""
        with self._lock:
            return {name: e.tier for name, e in self._entries.items()}

    def pinned(self) -> set[str]:
        with self._lock:
            return {name for name, e in self._entries.items() if e.pins > 0}

    def evict_unpinned(self, keep: str | Collection[str] | None = None) -> int:
        """Demote (or drop) every unpinned device model but those in `keep`: the first answer to a CUDA OOM."""
        kept = {keep} if isinstance(keep, str) else set(keep or ())
        with self._lock:
            victims = [e for e in self._entries.values() if e.tier == "device" and e.pins == 0 and e.name not in kept]
            for victim in victims:
                self._demote(victim)
        self._release_memory()
        return len(victims)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "device": self.device,
                "hits_device": self.hits["device"],
                "hits_host": self.hits["host"],
                "hits": self.hits["device"] + self.hits["host"],
                "misses": self.misses,
                "evictions": self.evictions,
                "demotions": self.demotions,
                "promotions": self.promotions,
                "loads": self.loads,
                "load_seconds": self.load_seconds,
                "bytes_device": sum(e.size for e in self._entries.values() if e.tier == "device"),
                "bytes_host": sum(e.size for e in self._entries.values() if e.tier == "host"),
                "budget_device": self.device_budget,
                "budget_host": self.host_budget,
                "peak_bytes_device": self.peak_bytes["device"],
                "peak_bytes_host": self.peak_bytes["host"],
                "models": len(self._entries),
            }

    # ---- internals ------------------------------------------------------------------

    def _acquire(self, name: str) -> _Entry:
        with self._lock:
            entry = self._entries.get(name)
            if entry is not None:
                self.hits[entry.tier] += 1
                entry.pins += 1
                self._entries.move_to_end(name)
                if entry.tier == "host":
                    # Counted on the device from here on, so the host room it leaves can
                    # take the model that its promotion demotes.
                    entry.tier = "device"
                    try:
                        self._make_room_on_device(entry.size, exclude=name)
                    except CacheFull:
                        entry.tier = "host"
                        entry.pins -= 1
                        raise
                    self._move(entry.model, self.device)
                    self._set_tier(entry, "device")
                    self.promotions += 1
                    self._note_peak()  # after the whole move: peaks are of settled states
                return entry
            self.misses += 1
        # Load outside the lock: it takes seconds and stats() readers must not wait.
        started = time.perf_counter()
        model = self._load(name)
        elapsed = time.perf_counter() - started
        size = self._size_of(model)
        with self._lock:
            self.loads += 1
            self.load_seconds += elapsed
            self.last_load_seconds = elapsed
            if size > self.device_budget:
                raise CacheFull(
                    f"model {name!r} needs {size} bytes but the {self.device} budget is {self.device_budget} bytes"
                )
            self._make_room_on_device(size, exclude=name)
            entry = _Entry(name, model, size, "device", pins=1)
            self._entries[name] = entry
            self._note_peak()
        try:
            self._move(model, self.device)
        except BaseException:
            with self._lock:
                self._entries.pop(name, None)
            raise
        return entry

    def _make_room_on_device(self, size: int, *, exclude: str) -> None:
        used = sum(e.size for e in self._entries.values() if e.tier == "device" and e.name != exclude)
        if used + size <= self.device_budget:
            return
        victims = [e for e in self._entries.values() if e.tier == "device" and e.pins == 0 and e.name != exclude]
        pinned = used - sum(v.size for v in victims)
        if pinned + size > self.device_budget:
            # Decide before moving anything, so a refusal leaves the cache exactly as it was.
            raise CacheFull(
                f"no room for {size} bytes on {self.device}: pinned models hold {pinned} of {self.device_budget} bytes"
            )
        for victim in victims:
            self._demote(victim)
            used -= victim.size
            if used + size <= self.device_budget:
                break
        self._release_memory()

    def _demote(self, victim: _Entry) -> None:
        if victim.size <= self.host_budget:
            host_used = sum(e.size for e in self._entries.values() if e.tier == "host")
            for old in [e for e in self._entries.values() if e.tier == "host" and e.pins == 0]:
                if host_used + victim.size <= self.host_budget:
                    break
                self._evict(old)
                host_used -= old.size
            if host_used + victim.size <= self.host_budget:
                self._move(victim.model, HOST)
                self._set_tier(victim, "host")
                self.demotions += 1
                return
        self._evict(victim)

    def _evict(self, entry: _Entry) -> None:
        self._entries.pop(entry.name, None)
        self.evictions += 1
        self._dropped_since_release = True
        log.info("model cache on %s evicted %s (%d bytes)", self.device, entry.name, entry.size)

    def _set_tier(self, entry: _Entry, tier: Tier) -> None:
        entry.tier = tier

    def _note_peak(self) -> None:
        for tier in ("device", "host"):
            used = sum(e.size for e in self._entries.values() if e.tier == tier)
            self.peak_bytes[tier] = max(self.peak_bytes[tier], used)

    def _release_memory(self) -> None:
        # Pipelines hold reference cycles; collect only when a model was actually dropped.
        if self._dropped_since_release and self._collect_garbage:
            self._dropped_since_release = False
            gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
