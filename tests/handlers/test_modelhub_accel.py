"""Downloads handed to nginx (`hub_accel_redirect_prefix`): the answer names the blob and carries no body."""

from __future__ import annotations

import hashlib
from typing import AsyncIterator
from urllib.parse import unquote

import pytest

from config import Settings
from server.runtime import Runtime
from tests.handlers.test_modelhub import create_model, put_file
from tests.support.client import ApiClient
from tests.support.safetensors_files import tiny_lora
from tests.support.server import running_server

PREFIX = "/_va_blobs/"


@pytest.fixture
async def accel_hub(embedded_backend, tmp_path) -> AsyncIterator[tuple[str, Runtime]]:
    from tests.conftest import make_settings

    settings: Settings = make_settings(embedded_backend, tmp_path / "data", hub_accel_redirect_prefix=PREFIX)
    async with running_server(settings) as started:
        yield started


async def test_a_download_behind_nginx_is_an_x_accel_redirect_without_a_body(accel_hub) -> None:
    base_url, runtime = accel_hub
    alice = ApiClient(base_url)
    try:
        await alice.register("alice")
        model = await create_model(alice)
        data = tiny_lora()
        response = await put_file(alice, model["versions"][0]["id"], "tiny-lora.safetensors", data)
        assert response.status_code == 201, response.text
        url = response.json()["file"]["download_url"]
        sha = hashlib.sha256(data).hexdigest()

        whole = await alice.get(url)
        assert whole.status_code == 200 and whole.content == b""
        target = whole.headers["X-Accel-Redirect"]
        assert target == f"{PREFIX}{sha[:2]}/{sha[2:4]}/{sha}"
        # nginx's internal location aliases the blob store: the URI names the stored file with these bytes.
        assert (runtime.blobs.root / unquote(target.removeprefix(PREFIX))).read_bytes() == data
        # The headers nginx passes on are ours; the length and ranges are nginx's, from the file.
        assert whole.headers["ETag"] == f'"{sha}"'
        assert whole.headers["Content-Disposition"].startswith('attachment; filename="tiny-lora.safetensors"')
        assert whole.headers["Content-Type"] == "application/octet-stream"
        assert "Content-Range" not in whole.headers

        ranged = await alice.get(url, headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 200 and ranged.content == b"" and ranged.headers["X-Accel-Redirect"] == target
        # HEAD and a revalidation are still answered here, as without nginx.
        head = await alice.request("HEAD", url)
        assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))
        assert "X-Accel-Redirect" not in head.headers
        assert (await alice.get(url, headers={"If-None-Match": f'"{sha}"'})).status_code == 304

        # Counted when the last byte is asked for (the whole file), not for the first ten bytes.
        await runtime.modelhub.catalog.flush_counters()
        detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
        assert detail["downloads"] == 1
    finally:
        await alice.aclose()
