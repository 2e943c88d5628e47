"""A process's CPU time: the figure the benchmarks print beside their rates (what the work cost, not only how fast)."""

from __future__ import annotations

import psutil


def cpu_seconds(process: psutil.Process) -> float:
    """User and system seconds the process (all its threads) has used so far."""
    times = process.cpu_times()
    return times.user + times.system
