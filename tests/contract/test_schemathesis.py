"""docs/openapi.yaml is what the server does: schemathesis (property-based, from the spec) against a real
embedded server with a bearer token, bounded (a fixed seed, a few examples per operation), and every
check it has must pass: no 5xx, no response that breaks its schema, no undocumented status, no valid
request refused or invalid one accepted, `Allow` on every 405."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from nacl.signing import SigningKey
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.conftest import make_settings
from tests.support.client import ApiClient
from tests.support.server import running_server

SPEC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
SEED = 20240615
EXAMPLES_PER_OPERATION = 25
# Left out, each with its own tests: revoking a token (the run would revoke its own), and submitting jobs
# (this server runs no engine, so they answer 503 `inference_disabled`, a 5xx by schemathesis's count).
SKIPPED = ["DELETE /api/tokens/{id}", "POST /api/jobs", "POST /api/collab/sessions/{id}/renders"]
# Requests the schema cannot tell from valid ones: an image's pixels, a .safetensors file's content, a
# file name of the wrong type, following oneself, removing the owner, an opaque cursor of another server.
# The server refuses them with the documented reason.
CONTENT_REFUSALS = {
    "POST /api/art": [400],
    "POST /api/stylize": [400, 415],  # no preset exists on this server, and the body is no photo
    "PUT /api/me/avatar": [400],
    "PUT /api/hub/models/{id}/thumbnail": [400],
    "PUT /api/hub/versions/{id}/files/{filename}": [400, 415, 422],
    "PATCH /api/hub/uploads/{id}": [400, 415, 422],
    "POST /api/hub/uploads": [400],
    "PUT /api/users/{username}/follow": [400],
    "DELETE /api/users/{username}/follow": [400],
    "DELETE /api/collab/sessions/{id}/members/{user_id}": [400],
    "GET /api/hub/models": [400],
    "GET /api/posts": [400],
}
ACCEPTED = ["2xx", "3xx", 401, 403, 404, 409, 429]  # schemathesis's default for a valid request

# tus PATCH bodies are raw bytes, as application/octet-stream.
schemathesis.serializer.alias("application/offset+octet-stream", "application/octet-stream")


@dataclass
class Figures:
    cases: int = 0
    server_errors: int = 0
    failures: Counter = field(default_factory=Counter)  # check name -> failed cases
    # (check, operation) -> one failing request and its answer, to show what to fix
    samples: dict = field(default_factory=dict)
    errors: list = field(default_factory=list)


def build_config(base_url: str, token: str) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        "seed": SEED,
        "cache": {"enabled": False},  # no state kept between runs (and no .schemathesis/ folder)
        "base-url": base_url,
        "auth": {"openapi": {"bearer": {"bearer": token}}},
        "request-timeout": 30,
        # Deterministic and unshrunk: the same cases every run, a few per operation and mode.
        "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "no-shrink": True},
        # Repeated query parameters: the spec cannot forbid them; the server takes the last one, as Tornado does.
        "phases": {"stateful": {"enabled": False}, "coverage": {"generate-duplicate-query-parameters": False}},
        "checks": {"enabled": True},
        "operations": [{"include-name": name, "enabled": False} for name in SKIPPED] + [
            {"include-name": name, "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + extra}}}
            for name, extra in CONTENT_REFUSALS.items()],
    })


def run_schemathesis(base_url: str, token: str) -> Figures:
    schema = schemathesis.openapi.from_path(SPEC, config=build_config(base_url, token))
    figures = Figures()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            figures.cases += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None and interaction.response.status_code >= 500:
                    figures.server_errors += 1
            for case_id, checks in recorder.checks.items():
                for check in checks:
                    if check.status != Status.FAILURE:
                        continue
                    figures.failures[check.name] += 1
                    key = (check.name, recorder.label)
                    if key not in figures.samples:
                        interaction = recorder.interactions.get(case_id)
                        failure = check.failure_info.failure if check.failure_info else None
                        request = f"{interaction.request.method} {interaction.request.uri}" if interaction else ""
                        answer = (f"{interaction.response.status_code} {interaction.response.content[:160]!r}"
                                  if interaction and interaction.response else "")
                        body = (interaction.request.body or b"")[:200] if interaction else b""
                        figures.samples[key] = f"{request} {body!r} -> {answer}: {getattr(failure, 'title', '')}"
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            figures.errors.append(str(getattr(event, "info", event)))
    return figures


@pytest.mark.timeout(240)
async def test_the_server_does_what_openapi_yaml_says(embedded_backend, tmp_path):
    # Discord's endpoint live (a key nobody here can sign with): every fuzzed interaction meets the signature check.
    settings = make_settings(embedded_backend, tmp_path / "data", inference_enabled=False,
                             discord_public_key=SigningKey.generate().verify_key.encode().hex())
    async with running_server(settings) as (base, _runtime):
        client = ApiClient(base)
        try:
            await client.register("schemathesis")
            token = (await client.post("/api/tokens", {"name": "contract"})).json()["token"]
        finally:
            await client.aclose()
        started = time.monotonic()
        figures = await asyncio.to_thread(run_schemathesis, base, token)
        seconds = time.monotonic() - started
    print(f"\nschemathesis: {figures.cases} cases in {seconds:.0f} s, {figures.server_errors} 5xx, "
          f"{figures.failures['response_schema_conformance']} response schema mismatches, "
          f"{sum(figures.failures.values())} failed checks {dict(figures.failures)}")
    for (check, operation), sample in sorted(figures.samples.items()):
        print(f"  {check} | {operation} | {sample[:500]}")
    for error in figures.errors[:20]:
        print("  error:", error[:300])
    assert figures.cases > 0 and not figures.errors
    assert figures.server_errors == 0
    assert not figures.failures, dict(figures.failures)
