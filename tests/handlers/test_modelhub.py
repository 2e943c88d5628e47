"""The model hub over HTTP on a real server: uploads (PUT and tus), downloads, ownership, finding."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
from pathlib import Path
from typing import AsyncIterator
from urllib.parse import quote, urlsplit

import pytest
from PIL import Image

from config import Settings
from server.runtime import Runtime
from tests.support.client import ApiClient, error_code
from tests.support.safetensors_files import bad_files, small_model, tiny_lora
from tests.support.server import running_server

TUS = {"Tus-Resumable": "1.0.0"}
HUB_LIMIT_BYTES = 256 * 1024


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[tuple[str, Runtime]]:
    settings = settings.model_copy(update={"hub_max_file_bytes": HUB_LIMIT_BYTES})
    async with running_server(settings) as started:
        yield started


@pytest.fixture
async def alice(hub: tuple[str, Runtime]) -> AsyncIterator[ApiClient]:
    client = ApiClient(hub[0])
    await client.register("alice")
    yield client
    await client.aclose()


async def create_model(client: ApiClient, name: str = "Tiny LoRA", **fields) -> dict:
    response = await client.post("/api/hub/models", {"name": name, **fields})
    assert response.status_code == 201, response.text
    return response.json()["model"]


async def put_file(client: ApiClient, version_id: int, name: str, data: bytes):
    return await client.put(f"/api/hub/versions/{version_id}/files/{quote(name, safe='')}", content=data)


def temp_files(runtime: Runtime) -> list[str]:
    return sorted(os.listdir(runtime.blobs.temp_dir))


def blob_files(runtime: Runtime) -> list[Path]:
    return [p for p in runtime.blobs.root.rglob("*") if p.is_file() and p.parent != runtime.blobs.temp_dir]


async def test_put_upload_then_download_whole_by_ranges_and_conditionally(hub, alice: ApiClient) -> None:
    base_url, runtime = hub
    model = await create_model(alice, description="# Hello\n<script>alert(1)</script>")
    assert "<script>" not in model["description_html"] and "<h1>Hello</h1>" in model["description_html"]
    data = tiny_lora()
    response = await put_file(alice, model["versions"][0]["id"], "tiny-lora.safetensors", data)
    assert response.status_code == 201, response.text
    file = response.json()["file"]
    sha = hashlib.sha256(data).hexdigest()
    assert (file["sha256"], file["size_bytes"], file["autov2"]) == (sha, len(data), sha[:10].upper())
    assert (file["kind"], file["base"]) == ("lora", "sd1")
    detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
    assert (detail["kind"], detail["base"]) == ("lora", "sd1")  # taken from the first file
    url = file["download_url"]

    whole = await alice.get(url)
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == sha
    assert whole.headers["ETag"] == f'"{sha}"' and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.headers["Content-Disposition"].startswith('attachment; filename="tiny-lora.safetensors"')

    pieces, step = [], 1000
    for start in range(0, len(data), step):
        part = await alice.get(url, headers={"Range": f"bytes={start}-{start + step - 1}"})
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes {start}-{min(start + step, len(data)) - 1}/{len(data)}"
        pieces.append(part.content)
    assert hashlib.sha256(b"".join(pieces)).hexdigest() == sha
    suffix = await alice.get(url, headers={"Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == data[-10:]

    past = await alice.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416 and error_code(past) == "range_not_satisfiable"
    assert past.headers["Content-Range"] == f"bytes */{len(data)}"
    head = await alice.request("HEAD", url)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)) and head.content == b""
    cached = await alice.get(url, headers={"If-None-Match": f'"{sha}"'})
    assert cached.status_code == 304
    stale = await alice.get(url, headers={"Range": "bytes=0-9", "If-Range": '"0000"'})
    assert stale.status_code == 200 and len(stale.content) == len(data)

    # Counted once per completed download: the whole GET, the range reaching the end, the suffix and the
    # If-Range fallback did; the other ranges, the 416, the HEAD and the 304 did not.
    await runtime.modelhub.catalog.flush_counters()
    detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
    assert detail["downloads"] == 4


async def test_tus_upload_survives_a_dropped_connection_and_resumes(hub, alice: ApiClient) -> None:
    base_url, runtime = hub
    model = await create_model(alice)
    data = small_model(150_000)
    options = await alice.request("OPTIONS", "/api/hub/uploads")
    assert "creation" in options.headers["Tus-Extension"] and options.headers["Tus-Version"] == "1.0.0"
    fields = {"filename": "big.safetensors", "version_id": str(model["versions"][0]["id"])}
    metadata = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in fields.items())
    created = await alice.post("/api/hub/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                                            "Upload-Metadata": metadata})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    patch_headers = {**TUS, "Content-Type": "application/offset+octet-stream"}

    # First piece completes normally.
    first = await alice.request("PATCH", location, content=data[:40_000],
                                headers={**patch_headers, "Upload-Offset": "0"})
    assert first.status_code == 204 and first.headers["Upload-Offset"] == "40000"
    wrong = await alice.request("PATCH", location, content=b"x", headers={**patch_headers, "Upload-Offset": "10"})
    assert wrong.status_code == 409 and error_code(wrong) == "offset_mismatch"
    over = await alice.request("PATCH", location, content=data, headers={**patch_headers, "Upload-Offset": "40000"})
    assert over.status_code == 413 and error_code(over) == "payload_too_large"

    # Second piece: the connection drops half-way through the body.
    sent = 50_000
    await _patch_and_drop(base_url, location, alice, offset=40_000, total=len(data) - 40_000,
                          body=data[40_000:40_000 + sent])
    offset = await _settled_offset(alice, location)
    assert 40_000 < offset <= 40_000 + sent

    # A corrupted piece is refused by its checksum and leaves the offset where it was.
    bad = await alice.request("PATCH", location, content=b"\0" * 100, headers={
        **patch_headers, "Upload-Offset": str(offset),
        "Upload-Checksum": "sha1 " + base64.b64encode(hashlib.sha1(b"other").digest()).decode()})
    assert bad.status_code == 460
    assert (await alice.request("HEAD", location, headers=TUS)).headers["Upload-Offset"] == str(offset)

    rest = data[offset:]
    done = await alice.request("PATCH", location, content=rest, headers={
        **patch_headers, "Upload-Offset": str(offset),
        "Upload-Checksum": "sha256 " + base64.b64encode(hashlib.sha256(rest).digest()).decode()})
    assert done.status_code == 204, done.text
    assert done.headers["Upload-Offset"] == str(len(data)) and done.headers["Hub-File-Id"]
    detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
    [file] = detail["versions"][0]["files"]
    assert file["sha256"] == hashlib.sha256(data).hexdigest() and file["filename"] == "big.safetensors"
    assert (await alice.request("HEAD", location, headers=TUS)).status_code == 404
    assert temp_files(runtime) == []


async def _patch_and_drop(base_url: str, location: str, client: ApiClient, *, offset: int, total: int,
                          body: bytes) -> None:
    """A PATCH that promises `total` bytes, sends `body`, and closes the connection."""
    host, port = urlsplit(base_url).hostname, urlsplit(base_url).port
    reader, writer = await asyncio.open_connection(host, port)
    cookies = "; ".join(f"{k}={v}" for k, v in client.http.cookies.items())
    head = (f"PATCH {location} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
            f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\n"
            f"Content-Length: {total}\r\nCookie: {cookies}\r\nX-XSRFToken: {client.http.cookies['_xsrf']}\r\n\r\n")
    writer.write(head.encode() + body)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()


async def _settled_offset(client: ApiClient, location: str) -> int:
    """The offset once the server has finished with the dropped request (it answers 423 until then)."""
    for _ in range(100):
        head = await client.request("HEAD", location, headers=TUS)
        offset = int(head.headers["Upload-Offset"])
        probe = await client.request("PATCH", location, content=b"", headers={
            **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)})
        if probe.status_code == 204:
            return offset
        await asyncio.sleep(0.05)
    raise AssertionError("the dropped upload never settled")


async def test_the_same_file_twice_is_stored_once(hub, alice: ApiClient) -> None:
    _, runtime = hub
    data = small_model(8000, seed=7)
    first, second = await create_model(alice, "one"), await create_model(alice, "two")
    for model in (first, second):
        response = await put_file(alice, model["versions"][0]["id"], "same.safetensors", data)
        assert response.status_code == 201, response.text
    sha = hashlib.sha256(data).hexdigest()
    assert [p.name for p in blob_files(runtime)].count(sha) == 1
    # Deleting one model keeps the bytes the other still uses; deleting both removes them.
    assert (await alice.delete(f"/api/hub/models/{first['id']}")).status_code == 204
    assert runtime.blobs.exists(sha)
    assert (await alice.delete(f"/api/hub/models/{second['id']}")).status_code == 204
    assert not runtime.blobs.exists(sha)


BAD = bad_files()


async def test_bad_uploads_are_refused_clearly_and_nothing_is_stored(hub, alice: ApiClient) -> None:
    _, runtime = hub
    model = await create_model(alice)
    version = model["versions"][0]["id"]
    for name, (data, code) in sorted(BAD.items()):
        response = await put_file(alice, version, f"{name}.safetensors", data)
        assert response.status_code in (415, 422), (name, response.text)
        assert error_code(response) == code, (name, response.text)
    for name, code in [("../evil.safetensors", "invalid_filename"), ("nul\x00.safetensors", "invalid_filename"),
                       ("model.ckpt", "pickle_refused"), ("notes.txt", "unsupported_file_type")]:
        response = await put_file(alice, version, name, small_model(64))
        assert response.status_code in (400, 415, 422) and error_code(response) == code, (name, response.text)
    too_big = await put_file(alice, version, "big.safetensors", small_model(HUB_LIMIT_BYTES + 1000))
    assert too_big.status_code == 413 and error_code(too_big) == "payload_too_large"
    tus_big = await alice.post("/api/hub/uploads", headers={
        **TUS, "Upload-Length": str(HUB_LIMIT_BYTES + 1),
        "Upload-Metadata": f"filename {base64.b64encode(b'x.safetensors').decode()},"
                           f"version_id {base64.b64encode(str(version).encode()).decode()}"})
    assert tus_big.status_code == 413
    await asyncio.sleep(0.1)  # let aborted uploads finish their clean-up
    assert temp_files(runtime) == [] and blob_files(runtime) == []
    detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
    assert detail["versions"][0]["files"] == [] and detail["kind"] == ""
    # The server is unharmed: a good file still goes in.
    assert (await put_file(alice, version, "good.safetensors", small_model(64))).status_code == 201


async def test_only_the_owner_may_edit_delete_or_upload(hub, alice: ApiClient) -> None:
    base_url, _ = hub
    model = await create_model(alice)
    bob = ApiClient(base_url)
    try:
        await bob.register("bob")
        path = f"/api/hub/models/{model['id']}"
        for response in (await bob.patch(path, {"name": "mine now"}), await bob.delete(path),
                         await bob.post(f"{path}/versions", {"name": "v2"}),
                         await put_file(bob, model["versions"][0]["id"], "x.safetensors", small_model(64))):
            assert response.status_code == 403 and error_code(response) == "not_owner", response.text
        assert (await bob.get(path)).json()["model"]["name"] == "Tiny LoRA"
        uploaded = await put_file(alice, model["versions"][0]["id"], "mine.safetensors", small_model(64))
        file_path = f"/api/hub/files/{uploaded.json()['file']['id']}"
        refused = await bob.delete(file_path)
        assert refused.status_code == 403 and error_code(refused) == "not_owner"
        assert (await alice.delete(file_path)).status_code == 204
        assert (await alice.get(path)).json()["model"]["versions"][0]["files"] == []
        assert (await alice.get(uploaded.json()["file"]["download_url"])).status_code == 404
        anonymous = ApiClient(base_url)
        assert (await anonymous.post("/api/hub/models", {"name": "x"})).status_code == 401
        await anonymous.aclose()
        patched = await alice.patch(path, {"name": "Renamed", "tags": ["Anime", "style"]})
        assert patched.status_code == 200 and patched.json()["model"]["tags"] == ["anime", "style"]
    finally:
        await bob.aclose()


async def test_find_filters_sorts_pages_and_sees_every_write(hub, alice: ApiClient) -> None:
    _, runtime = hub
    ids = {}
    for name, kind, tags in [("Ink Wash", "lora", ["ink"]), ("Photo Real", "checkpoint", ["photo"]),
                             ("Ink Portrait", "lora", ["portrait"]), ("Line Art", "controlnet", [])]:
        ids[name] = (await create_model(alice, name, kind=kind, tags=tags))["id"]
    listing = (await alice.get("/api/hub/models")).json()
    assert [m["name"] for m in listing["models"]] == ["Line Art", "Ink Portrait", "Photo Real", "Ink Wash"]
    found = (await alice.get("/api/hub/models", params={"q": "ink"})).json()["models"]
    assert {m["name"] for m in found} == {"Ink Wash", "Ink Portrait"}
    by_tag = (await alice.get("/api/hub/models", params={"q": "photo", "kind": "checkpoint"})).json()["models"]
    assert [m["name"] for m in by_tag] == ["Photo Real"]
    assert (await alice.get("/api/hub/models", params={"owner": "nobody"})).json()["models"] == []

    pages, cursor = [], None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        page = (await alice.get("/api/hub/models", params=params)).json()
        pages.append([m["name"] for m in page["models"]])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert pages == [["Line Art", "Ink Portrait", "Photo Real"], ["Ink Wash"]]

    # A write is visible at once although the list is cached.
    await alice.patch(f"/api/hub/models/{ids['Ink Wash']}", {"name": "Sumi Wash"})
    washes = (await alice.get("/api/hub/models", params={"q": "wash"})).json()["models"]
    assert {m["name"] for m in washes} == {"Sumi Wash"}
    # Likes accumulate and reach the database in a batch; sorting by them follows.
    assert (await alice.put(f"/api/hub/models/{ids['Photo Real']}/like")).status_code == 204
    assert (await alice.put(f"/api/hub/models/{ids['Photo Real']}/like")).status_code == 204  # idempotent
    await runtime.modelhub.catalog.flush_counters()
    liked = (await alice.get("/api/hub/models", params={"sort": "likes"})).json()["models"]
    assert liked[0]["name"] == "Photo Real" and liked[0]["likes"] == 1
    bad = await alice.get("/api/hub/models", params={"sort": "random"})
    assert bad.status_code == 400 and error_code(bad) == "invalid_input"
    assert error_code(await alice.get("/api/hub/models", params={"cursor": "garbage"})) == "invalid_cursor"


async def test_abandoned_uploads_expire_and_are_swept(hub, alice: ApiClient) -> None:
    _, runtime = hub
    model = await create_model(alice)
    metadata = (f"filename {base64.b64encode(b'late.safetensors').decode()},"
                f"version_id {base64.b64encode(str(model['versions'][0]['id']).encode()).decode()}")
    created = await alice.post("/api/hub/uploads",
                               headers={**TUS, "Upload-Length": "1000", "Upload-Metadata": metadata})
    location = created.headers["Location"]
    await alice.request("PATCH", location, content=b"\0" * 100,
                        headers={**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert len(temp_files(runtime)) == 1
    import datetime as dt
    from server.store.models import utcnow
    assert await runtime.modelhub.uploads.expire(utcnow() + dt.timedelta(days=2)) == 1
    assert temp_files(runtime) == []
    assert (await alice.request("HEAD", location, headers=TUS)).status_code == 404


async def test_huggingface_hub_client_downloads_from_us(hub, alice: ApiClient, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The real `huggingface_hub` client: hf_hub_download and snapshot_download with endpoint=<our URL>."""
    from huggingface_hub import constants, hf_hub_download, snapshot_download

    # The inference tests force offline mode for the whole session; this test must reach our server.
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    base_url, _ = hub
    model = await create_model(alice, "HF Repo")
    files = {"unet.safetensors": small_model(20_000, seed=3), "lora.safetensors": tiny_lora(seed=4)}
    for name, data in files.items():
        assert (await put_file(alice, model["versions"][0]["id"], name, data)).status_code == 201
    repo_id = model["repo_id"]
    assert repo_id == "alice/hf-repo"
    cache = tmp_path / "hf-cache"

    def fetch() -> tuple[str, str]:
        one = hf_hub_download(repo_id, "lora.safetensors", endpoint=base_url, cache_dir=cache, token=False)
        folder = snapshot_download(repo_id, endpoint=base_url, cache_dir=cache / "snap", token=False)
        return one, folder

    one, folder = await asyncio.get_running_loop().run_in_executor(None, fetch)
    assert Path(one).read_bytes() == files["lora.safetensors"]
    assert {p.name: p.read_bytes() for p in Path(folder).iterdir()} == files
    detail = (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]
    assert Path(folder).name == detail["versions"][0]["commit"]
    missing = await alice.get(f"/{repo_id}/resolve/main/nothere.safetensors")
    assert missing.status_code == 404 and missing.headers["X-Error-Code"] == "EntryNotFound"


async def test_the_owner_sets_a_preview_image_shown_in_lists(hub, alice: ApiClient) -> None:
    base_url, _ = hub
    model = await create_model(alice)
    buffer = io.BytesIO()
    Image.new("RGB", (800, 400), (200, 40, 40)).save(buffer, format="PNG")
    path = f"/api/hub/models/{model['id']}/thumbnail"
    not_image = await alice.put(path, content=b"not an image", headers={"Content-Type": "image/png"})
    assert not_image.status_code == 415
    done = await alice.put(path, content=buffer.getvalue(), headers={"Content-Type": "image/png"})
    assert done.status_code == 200, done.text
    url = done.json()["model"]["thumbnail_url"]
    assert [m["thumbnail_url"] for m in (await alice.get("/api/hub/models")).json()["models"]] == [url]
    image = await alice.get(url)
    assert image.headers["Content-Type"] == "image/webp" and "immutable" in image.headers["Cache-Control"]
    assert Image.open(io.BytesIO(image.content)).size == (480, 360)
    bob = ApiClient(base_url)
    try:
        await bob.register("bob")
        refused = await bob.put(path, content=buffer.getvalue(), headers={"Content-Type": "image/png"})
        assert refused.status_code == 403
    finally:
        await bob.aclose()


async def test_a_bad_file_sent_by_tus_is_refused_when_complete_and_leaves_nothing(hub, alice: ApiClient) -> None:
    _, runtime = hub
    model = await create_model(alice)
    data, code = BAD["shape_mismatch"]
    metadata = (f"filename {base64.b64encode(b'bad.safetensors').decode()},"
                f"version_id {base64.b64encode(str(model['versions'][0]['id']).encode()).decode()}")
    created = await alice.post("/api/hub/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                                            "Upload-Metadata": metadata})
    location = created.headers["Location"]
    done = await alice.request("PATCH", location, content=data, headers={
        **TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"})
    assert done.status_code == 422 and error_code(done) == code
    assert "span" in done.json()["error"]["message"]
    assert (await alice.request("HEAD", location, headers=TUS)).status_code == 404
    assert temp_files(runtime) == [] and blob_files(runtime) == []


async def test_lists_and_details_come_from_the_cache_until_a_write(hub, alice: ApiClient) -> None:
    """Cache-aside: a change made behind the service's back is not seen until a write invalidates."""
    from sqlalchemy import update

    from server.store.hub_tables import HubModel

    _, runtime = hub
    model = await create_model(alice, "Cached Name")
    assert (await alice.get("/api/hub/models")).json()["models"][0]["name"] == "Cached Name"
    assert (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]["name"] == "Cached Name"
    async with runtime.db() as db:
        await db.execute(update(HubModel).where(HubModel.id == model["id"]).values(name="Behind The Back"))
        await db.commit()
    assert (await alice.get("/api/hub/models")).json()["models"][0]["name"] == "Cached Name"
    assert (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]["name"] == "Cached Name"
    await alice.patch(f"/api/hub/models/{model['id']}", {"licence": "MIT"})
    assert (await alice.get("/api/hub/models")).json()["models"][0]["name"] == "Behind The Back"
    assert (await alice.get(f"/api/hub/models/{model['id']}")).json()["model"]["licence"] == "MIT"


async def test_a_reported_model_hidden_by_a_moderator_is_gone_for_all_but_owner_and_moderators(
        hub, alice: ApiClient) -> None:
    base_url, runtime = hub
    model = await create_model(alice, name="Shady LoRA")
    uploaded = (await put_file(alice, model["versions"][0]["id"], "shady.safetensors", small_model(64))).json()["file"]
    bob, mona = ApiClient(base_url), ApiClient(base_url)
    try:
        await bob.register("bob")
        await mona.register("mona")
        await runtime.users.set_moderator("mona", True)
        report = await bob.post("/api/reports", json={"kind": "model", "target": model["id"], "reason": "copyright"})
        assert report.status_code == 201, report.text
        queue = (await mona.get("/api/moderation/reports")).json()["items"]
        assert queue[0]["kind"] == "model" and queue[0]["subject"]["name"] == "Shady LoRA"
        preview = io.BytesIO()
        Image.new("RGB", (64, 64), (90, 10, 10)).save(preview, format="PNG")
        thumbnail_url = (await alice.put(f"/api/hub/models/{model['id']}/thumbnail", content=preview.getvalue(),
                                         headers={"Content-Type": "image/png"})).json()["model"]["thumbnail_url"]
        assert (await bob.get(thumbnail_url)).status_code == 200
        assert (await mona.post(f"/api/moderation/model/{model['id']}/hide")).json()["reports_closed"] == 1
        path = f"/api/hub/models/{model['id']}"
        assert (await bob.get("/api/hub/models?q=shady")).json()["models"] == []
        assert (await bob.get(path)).status_code == 404
        assert (await bob.get(uploaded["download_url"])).status_code == 404
        assert (await bob.get(thumbnail_url)).status_code == 404  # the preview image is hidden too
        assert (await alice.get(thumbnail_url)).status_code == 200
        assert (await mona.get(thumbnail_url)).status_code == 200
        assert (await alice.get(path)).json()["model"]["hidden"] is True
        assert (await mona.get(uploaded["download_url"])).status_code == 200
        await mona.post(f"/api/moderation/model/{model['id']}/restore")
        assert [m["id"] for m in (await bob.get("/api/hub/models?q=shady")).json()["models"]] == [model["id"]]
        assert (await bob.get(uploaded["download_url"])).status_code == 200
    finally:
        await bob.aclose()
        await mona.aclose()
