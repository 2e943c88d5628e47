"""The catalog's reads cost a fixed number of queries however many models, versions and files there are."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import event

from server.modelhub.safetensors_check import CheckedFile, TensorInfo
from server.modelhub.schemas import ListQuery, NewModel, NewVersion
from server.runtime import Runtime


@contextmanager
def counted(runtime: Runtime) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(runtime.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(runtime.engine.sync_engine, "before_cursor_execute", record)


def checked(size: int) -> CheckedFile:
    return CheckedFile(size_bytes=size, header_bytes=64, tensors=[TensorInfo("t", "U8", (size,), 0, size)],
                       kind="lora", base="sd1")


async def test_list_and_detail_query_counts_do_not_grow(runtime: Runtime) -> None:
    user = await runtime.users.register("counter", "correct horse battery")
    catalog = runtime.modelhub.catalog
    model_ids = []
    for index in range(30):
        model = await catalog.create_model(user, NewModel(name=f"model {index}"))
        model_ids.append(model["id"])
    big = await catalog.detail(model_ids[0])
    versions = [big["versions"][0]["id"]]
    for name in ("v2", "v3"):
        versions.append((await catalog.add_version(user, model_ids[0], NewVersion(name=name)))["id"])
    for version_id in versions:
        version = await catalog.writable_version(user, version_id)
        for index in range(4):
            sha = f"{version_id:02d}{index:02d}".ljust(64, "a")
            await catalog.attach_file(version, f"f{index}.safetensors", sha, checked(100 + index))

    with counted(runtime) as statements:
        page = await catalog.list_models(ListQuery(limit=25))
    assert len(statements) == 1, statements  # one SELECT joined with the owners, whatever the page size
    assert page.count(b'"repo_id"') == 25
    with counted(runtime) as statements:
        await catalog.list_models(ListQuery(limit=25))
    assert statements == []  # the second time from the cache

    with counted(runtime) as statements:
        detail = await catalog.detail(model_ids[0])
    assert len(statements) == 3, statements  # the model, its versions, all their files
    assert sum(len(v["files"]) for v in detail["versions"]) == 12
