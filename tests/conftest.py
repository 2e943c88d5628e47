"""Shared fixtures: both backends, settings per test, a real server, API clients."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from config import Settings
from inference.demo_model import DEMO_CONTROLNET_NAME, DEMO_MODEL_NAME, build_demo_controlnet, build_demo_model
from inference.models import CONTROLNET_FOLDER
from server.runtime import Runtime
from tests.support.backends import TEST_COOKIE_SECRET, Backend, backend as open_backend
from tests.support.client import ApiClient
from tests.support.server import running_server


@pytest.fixture(params=["embedded", pytest.param("services", marks=pytest.mark.services)])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Runs the test once embedded (SQLite + in-process) and once on MariaDB + Redis."""
    with open_backend(request.param) as chosen:
        yield chosen


@pytest.fixture
def embedded_backend() -> Iterator[Backend]:
    with open_backend("embedded") as chosen:
        yield chosen


def make_settings(backend: Backend, data_dir: Path, **overrides) -> Settings:
    values = dict(
        data_dir=data_dir,
        database_url=backend.database_url,
        redis_url=backend.redis_url,
        redis_prefix=backend.redis_prefix,
        cookie_secret=TEST_COOKIE_SECRET,
        io_threads=2,
        cpu_threads=2,
    )
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(backend: Backend, tmp_path: Path) -> Settings:
    return make_settings(backend, tmp_path / "data")


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    runtime = await Runtime.start(settings, migrate=True)
    yield runtime
    await runtime.close()


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[str]:
    async with running_server(settings) as (base_url, _runtime):
        yield base_url


@pytest.fixture
async def api(server: str) -> AsyncIterator[ApiClient]:
    client = ApiClient(server)
    yield client
    await client.aclose()


@pytest.fixture
async def new_client(server: str) -> AsyncIterator:
    """Makes more clients (other browsers, scripts with tokens), closed after the test."""
    clients: list[ApiClient] = []

    def make(token: str | None = None) -> ApiClient:
        client = ApiClient(server, token=token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight SD model and its ControlNet (`run.py demo-model`), built once per test session."""
    models = tmp_path_factory.mktemp("models")
    build_demo_model(models / DEMO_MODEL_NAME)
    build_demo_controlnet(models / CONTROLNET_FOLDER / DEMO_CONTROLNET_NAME)
    return models


@pytest.fixture
def gen_settings(backend: Backend, tmp_path: Path, demo_models_dir: Path) -> Settings:
    """Settings whose data dir has the demo model; every preview is sent (no frame-rate cap)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "models").symlink_to(demo_models_dir, target_is_directory=True)
    return make_settings(backend, data, preview_fps=0)


@pytest.fixture
async def gen_server(gen_settings: Settings) -> AsyncIterator[str]:
    async with running_server(gen_settings) as (base_url, _runtime):
        yield base_url


@pytest.fixture
async def users(gen_server: str) -> AsyncIterator:
    """Registers signed-in clients on the generating server by name, closed after the test."""
    clients: list[ApiClient] = []

    async def make(name: str) -> ApiClient:
        client = ApiClient(gen_server)
        await client.register(name)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
