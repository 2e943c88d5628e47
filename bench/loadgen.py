"""A small closed-loop HTTP/1.1 load generator on raw asyncio streams (keep-alive, no client library
overhead), so the figures measure the server rather than the client."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

# A server that does not accept a connection, or answer one request, within this is stuck, not slow.
CONNECT_TIMEOUT_SECS = 10
RESPONSE_TIMEOUT_SECS = 30


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> str:
        return (f"{self.rps:8.0f} req/s  p50 {self.percentile(0.5) * 1000:6.1f} ms  "
                f"p99 {self.percentile(0.99) * 1000:6.1f} ms  ({self.requests} ok, {self.errors} errors)")


async def _read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def _worker(host: str, port: int, requests: list[bytes], offset: int, deadline: float,
                  result: LoadResult) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_SECS)
    index = offset
    try:
        while time.perf_counter() < deadline:
            request = requests[index % len(requests)]
            index += 1
            started = time.perf_counter()
            writer.write(request)
            status = await asyncio.wait_for(_read_response(reader), RESPONSE_TIMEOUT_SECS)
            if status == 200:
                result.requests += 1
                result.latencies.append(time.perf_counter() - started)
            else:
                result.errors += 1
    finally:
        writer.close()


async def run_load(host: str, port: int, path: str | list[str], headers: dict[str, str], *,
                   connections: int = 64, seconds: float = 10.0) -> LoadResult:
    """Keep ``connections`` requests in flight for ``seconds``; one request per connection at a time.
    Several paths are taken in turn, each connection starting at another one."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    paths = [path] if isinstance(path, str) else path
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}\r\n".encode() for p in paths]
    result = LoadResult()
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(_worker(host, port, requests, i * 7, deadline, result) for i in range(connections)))
    result.seconds = time.perf_counter() - started
    return result


def median(values: list[float]) -> float:
    return statistics.median(values)
