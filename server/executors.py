"""Named thread pools for blocking work that must stay off the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass
class Executors:
    # File copies, hashing and other I/O-bound work.
    io: ThreadPoolExecutor
    # Pillow, password hashing and other CPU-bound work that releases the GIL.
    cpu: ThreadPoolExecutor

    @classmethod
    def create(cls, io_threads: int, cpu_threads: int) -> "Executors":
        return cls(
            io=ThreadPoolExecutor(io_threads, thread_name_prefix="va-io"),
            cpu=ThreadPoolExecutor(cpu_threads, thread_name_prefix="va-cpu"),
        )

    async def run_io(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.io, fn, *args)

    async def run_cpu(self, fn: Callable[..., T], *args) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    def shutdown(self) -> None:
        self.io.shutdown(wait=False, cancel_futures=True)
        self.cpu.shutdown(wait=False, cancel_futures=True)
