"""Jobs as tests need them: one submitted over HTTP and waited for until it is done."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.support.client import ApiClient

SMALL_JOB = {"kind": "txt2img", "model": "demo-tiny", "prompt": "a lighthouse at dusk", "width": 64, "height": 64,
             "steps": 2, "sampler": "Euler"}
POLL_SECS = 0.1
TIMEOUT_SECS = 60.0


async def finished_job(client: ApiClient, **fields: Any) -> dict:
    """A small job of ``client`` (``fields`` over `SMALL_JOB`), once done; fails loudly otherwise."""
    response = await client.post("/api/jobs", json={**SMALL_JOB, **fields})
    assert response.status_code == 202, response.text
    job_id = response.json()["job"]["id"]
    for _ in range(int(TIMEOUT_SECS / POLL_SECS)):
        job = (await client.get(f"/api/jobs/{job_id}")).json()["job"]
        if job["status"] not in ("queued", "running"):
            assert job["status"] == "done", job
            return job
        await asyncio.sleep(POLL_SECS)
    raise AssertionError(f"job {job_id} did not finish in {TIMEOUT_SECS:g} s")
