"""The Hugging Face Hub API shapes that `huggingface_hub` reads, over our models.

A model `owner/slug` is a repo; each version is a revision named by the version name and by
a 40-hex commit id derived from its files; `main` is the newest version. Files are LFS
entries whose oid is the sha256, which is also the ETag the client verifies.
"""

from __future__ import annotations

from typing import Any

from server.errors import NotFound
from server.modelhub.catalog import Catalog, FileRef

# huggingface_hub reads this header to raise its specific error types.
HF_ERROR_HEADER = "X-Error-Code"
LFS_POINTER_BYTES = 134  # the size of a git-lfs pointer file, which the client records


class HfCompat:
    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    async def revision(self, owner: str, slug: str, revision: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The model and the version a revision names (`main`, a version name or a commit id)."""
        try:
            detail = await self._catalog.detail(await self._catalog.find_model_id(owner, slug))
        except NotFound:
            raise NotFound(f"Repository {owner}/{slug} not found.", code="repo_not_found",
                           headers={HF_ERROR_HEADER: "RepoNotFound"}) from None
        versions = detail["versions"]
        wanted = revision or "main"
        for index, version in enumerate(versions):
            if (wanted == "main" and index == 0) or wanted in (version["name"], version["commit"]):
                return detail, version
        raise NotFound(f"Revision {wanted[:64]!r} not found in {owner}/{slug}.", code="revision_not_found",
                       headers={HF_ERROR_HEADER: "RevisionNotFound"})

    async def repo_info(self, owner: str, slug: str, revision: str | None) -> dict[str, Any]:
        detail, version = await self.revision(owner, slug, revision)
        return {
            "id": detail["repo_id"], "modelId": detail["repo_id"], "author": detail["owner"]["username"],
            "sha": version["commit"], "lastModified": detail["updated_at"], "createdAt": detail["created_at"],
            "private": False, "gated": False, "disabled": False, "downloads": detail["downloads"],
            "likes": detail["likes"], "tags": detail["tags"], "library_name": "diffusers",
            "siblings": [{"rfilename": f["filename"], "size": f["size_bytes"], "blobId": _blob_id(f),
                          "lfs": {"size": f["size_bytes"], "sha256": f["sha256"], "pointerSize": LFS_POINTER_BYTES}}
                         for f in version["files"]],
        }

    async def tree(self, owner: str, slug: str, revision: str, path: str = "") -> list[dict[str, Any]]:
        _, version = await self.revision(owner, slug, revision)
        if path.strip("/"):
            return []  # versions are flat: no folders
        return [{"type": "file", "path": f["filename"], "size": f["size_bytes"], "oid": _blob_id(f),
                 "lfs": {"oid": f["sha256"], "size": f["size_bytes"], "pointerSize": LFS_POINTER_BYTES}}
                for f in version["files"]]

    async def resolve(self, owner: str, slug: str, revision: str, filename: str) -> tuple[FileRef, str]:
        """The file a resolve URL names, and the commit id of its version."""
        _, version = await self.revision(owner, slug, revision)
        for f in version["files"]:
            if f["filename"] == filename:
                return await self._catalog.file_ref(f["id"]), version["commit"]
        raise NotFound(f"{filename[:100]!r} is not in {owner}/{slug}@{revision[:64]}.", code="entry_not_found",
                       headers={HF_ERROR_HEADER: "EntryNotFound"})


def _blob_id(file: dict[str, Any]) -> str:
    # git's blob id of an LFS pointer is a sha1; any stable 40-hex value works for the client.
    return file["sha256"][:40]
