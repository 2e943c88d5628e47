"""Models, versions and files: create, edit, delete, find; lists and details through the cache.

Cache-aside with two kinds of keys: a model's detail (`hub:model:<id>`, deleted on any
write to that model) and list pages (`hub:list:<generation>:<query hash>`). Every write
bumps the generation, so every cached page is stale at once without knowing which pages
held the model; the old pages expire by their TTL.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import and_, delete, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.blobs import BlobStore
from server.cache import Cache, CacheAside
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.executors import Executors
from server.ids import parse_id
from server.modelhub.counters import Counters
from server.modelhub.markdown import render_markdown
from server.modelhub.publish import LINKED_KINDS, ModelLinks, engine_name
from server.modelhub.safetensors_check import CheckedFile
from server.modelhub.schemas import ListQuery, ModelPatch, NewModel, NewVersion
from server.modelhub.thumbnails import make_preview
from server.store.hub_tables import HubFile, HubLike, HubModel, HubVersion
from server.store.models import User, iso, utcnow

log = logging.getLogger(__name__)

GENERATION_KEY = "hub:gen"
SLUG_RE = re.compile(r"[^a-z0-9._-]+")
AUTOV2_HEX = 10
LIST_DESCRIPTION_CHARS = 200  # A1111/Civitai's short hash: the first 10 hex digits of the sha256


@dataclass(frozen=True)
class FileRef:
    """A stored file, enough to serve it."""

    id: int
    model_id: int
    filename: str
    size_bytes: int
    sha256: str
    path: Path


def slugify(name: str) -> str:
    slug = SLUG_RE.sub("-", name.strip().lower()).strip("-.")[:64]
    if not slug:
        raise InvalidInput(f"`name` {name[:40]!r} needs at least one letter or digit.")
    return slug


def version_commit(version_id: int, files: list[tuple[str, str]]) -> str:
    """A 40-hex id for a version's contents, what Hugging Face clients expect as a commit sha."""
    text = f"va-hub:{version_id}:" + ",".join(f"{name}={sha}" for name, sha in sorted(files))
    return hashlib.sha1(text.encode()).hexdigest()



def _encode_cursor(value: Any, row_id: int) -> str:
    return base64.urlsafe_b64encode(json.dumps([value, row_id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, int]:
    try:
        value, row_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(row_id, int):
            raise ValueError
        return value, row_id
    except (ValueError, TypeError, json.JSONDecodeError):
        raise InvalidInput("`cursor` is not one this server handed out.", code="invalid_cursor") from None


class Catalog:
    def __init__(self, db: async_sessionmaker[AsyncSession], cache: Cache, blobs: BlobStore,
                 executors: Executors, counters: Counters, cache_ttl_secs: float, links: ModelLinks) -> None:
        self._links = links
        self._db = db
        self._pages = CacheAside(cache, cache_ttl_secs)
        self._blobs = blobs
        self._executors = executors
        self.counters = counters

    # -- writes ---------------------------------------------------------------------------------

    async def create_model(self, user: User, fields: NewModel) -> dict[str, Any]:
        """A new model with its first (empty) version; the owner then uploads files into it."""
        model = HubModel(owner_id=user.id, slug=slugify(fields.name), name=fields.name.strip(), kind=fields.kind,
                         base=fields.base, description=fields.description, tags=" ".join(fields.tags),
                         licence=fields.licence, nsfw=fields.nsfw)
        async with self._db() as db:
            db.add(model)
            try:
                await db.flush()
            except IntegrityError:
                raise Conflict(f"You already have a model named `{model.slug}`.", code="name_taken") from None
            db.add(HubVersion(model_id=model.id, name=fields.version))
            await db.commit()
        await self._invalidate(model.id)
        return await self.detail(model.id)

    async def update_model(self, user: User, model_id: int, patch: ModelPatch) -> dict[str, Any]:
        """Change a model's fields (owner only)."""
        changes = patch.model_dump(exclude_none=True)
        if "tags" in changes:
            changes["tags"] = " ".join(changes["tags"])
        if "name" in changes:
            changes["name"] = changes["name"].strip()
        async with self._db() as db:
            model = await self._owned(db, user, model_id)
            for name, value in changes.items():
                setattr(model, name, value)
            await db.commit()
        await self._invalidate(model_id)
        return await self.detail(model_id)

    async def delete_model(self, user: User, model_id: int) -> None:
        """Delete a model, its versions and files (owner only); blobs no other file uses are removed."""
        async with self._db() as db:
            await self._owned(db, user, model_id)
            rows = await self._files(db, model_id)
            shas = {row.sha256 for row in rows}
            version_ids = select(HubVersion.id).where(HubVersion.model_id == model_id)
            # Explicit deletes rather than ON DELETE CASCADE alone: SQLite enforces it only with the pragma.
            await db.execute(delete(HubFile).where(HubFile.version_id.in_(version_ids)))
            await db.execute(delete(HubVersion).where(HubVersion.model_id == model_id))
            await db.execute(delete(HubLike).where(HubLike.model_id == model_id))
            await db.execute(delete(HubModel).where(HubModel.id == model_id))
            await db.commit()
        await self._invalidate(model_id)
        await self._link(rows, linked=False)
        await self._drop_unused_blobs(shas)

    @staticmethod
    async def _files(db: Any, model_id: int) -> list[Any]:
        return list((await db.execute(
            select(HubFile.sha256, HubFile.kind, HubFile.filename, HubVersion.name, HubModel.slug, User.username)
            .join(HubVersion, HubVersion.id == HubFile.version_id)
            .join(HubModel, HubModel.id == HubVersion.model_id).join(User, User.id == HubModel.owner_id)
            .where(HubVersion.model_id == model_id))).all())

    async def _link(self, rows: list[Any], *, linked: bool) -> None:
        """Make a model's files loadable by the workers (listed in the picker, usable in jobs), or not."""
        for row in rows:
            name = engine_name(row.username, row.slug, row.name, row.filename)
            if linked:
                await self._executors.run_io(self._links.link, name, row.kind, self._blobs.path(row.sha256))
            else:
                await self._executors.run_io(self._links.unlink, name, row.kind)

    async def delete_file(self, user: User, file_id: int) -> None:
        """Delete one file of a model (owner only); its blob goes when no other file uses it."""
        async with self._db() as db:
            row = (await db.execute(
                select(HubFile, HubVersion.name, HubVersion.model_id)
                .join(HubVersion, HubVersion.id == HubFile.version_id).where(HubFile.id == file_id))).first()
            if row is None:
                raise NotFound(f"There is no file {file_id}.")
            file, version_name, model_id = row
            model = await self._owned(db, user, model_id)
            owner = await db.get(User, model.owner_id)
            await db.delete(file)
            await db.commit()
        await self._invalidate(model_id)
        if owner is not None:
            await self._executors.run_io(self._links.unlink, engine_name(owner.username, model.slug, version_name,
                                                                         file.filename), file.kind)
        await self._drop_unused_blobs({file.sha256})

    async def add_version(self, user: User, model_id: int, fields: NewVersion) -> dict[str, Any]:
        """A new version of a model (owner only)."""
        async with self._db() as db:
            await self._owned(db, user, model_id)
            version = HubVersion(model_id=model_id, name=fields.name, notes=fields.notes)
            db.add(version)
            try:
                await db.commit()
            except IntegrityError:
                raise Conflict(f"This model already has a version `{fields.name}`.", code="version_exists") from None
        await self._invalidate(model_id)
        return {"id": version.id, "name": version.name, "model_id": model_id}

    async def writable_version(self, user: User, version_id: int, filename: str | None = None) -> HubVersion:
        """The version a file is being uploaded into; 403 unless `user` owns it, 409 if the name is taken."""
        async with self._db() as db:
            version = await db.get(HubVersion, version_id)
            if version is None:
                raise NotFound(f"There is no model version {version_id}.")
            await self._owned(db, user, version.model_id)
            if filename is not None:
                taken = await db.scalar(select(HubFile.id).where(HubFile.version_id == version_id,
                                                                 HubFile.filename == filename))
                if taken is not None:
                    raise Conflict(f"This version already has a file named `{filename}`.", code="file_exists")
        return version

    async def attach_file(self, version: HubVersion, filename: str, sha256: str,
                          checked: CheckedFile) -> dict[str, Any]:
        """Record a validated, stored file in its version; the model takes the file's kind/base if it had none."""
        row = HubFile(version_id=version.id, filename=filename, size_bytes=checked.size_bytes, sha256=sha256,
                      kind=checked.kind, base=checked.base, tensor_count=len(checked.tensors),
                      metadata_json=json.dumps(checked.metadata, ensure_ascii=False))
        async with self._db() as db:
            db.add(row)
            try:
                await db.flush()
            except IntegrityError:
                await db.rollback()
                await self._drop_unused_blobs({sha256})
                raise Conflict(f"This version already has a file named `{filename}`.", code="file_exists") from None
            model = await db.get(HubModel, version.model_id)
            owner = await db.get(User, model.owner_id) if model is not None else None
            if model is not None:
                if not model.kind and checked.kind:
                    model.kind = checked.kind
                if not model.base and checked.base:
                    model.base = checked.base
                model.updated_at = utcnow()
            await db.commit()
        if model is not None and owner is not None and not model.hidden:
            # Checkpoints and LoRAs become loadable by the engine: they appear in the Generate page's picker.
            name = engine_name(owner.username, model.slug, version.name, filename)
            await self._executors.run_io(self._links.link, name, checked.kind, self._blobs.path(sha256))
        await self._invalidate(version.model_id)
        return _file_json(row, engine_name(owner.username if owner else "", model.slug if model else "",
                                           version.name, filename))

    async def set_thumbnail(self, user: User, model_id: int, data: bytes) -> dict[str, Any]:
        """Store a preview image for the model (owner only); returns the model."""
        async with self._db() as db:
            await self._owned(db, user, model_id)
        if not data:
            raise InvalidInput("The image is empty.", code="invalid_image")
        preview = await self._executors.run_cpu(make_preview, data)
        digest = await self._executors.run_io(self._blobs.put_bytes, preview)
        async with self._db() as db:
            model = await self._owned(db, user, model_id)
            model.thumbnail_sha256 = digest
            await db.commit()
        await self._invalidate(model_id)
        return await self.detail(model_id)

    async def thumbnail(self, model_id: int, viewer: User | None = None) -> tuple[str, bytes]:
        """The preview image's sha256 and WebP bytes; a hidden model's only for its owner and moderators."""
        async with self._db() as db:
            row = (await db.execute(select(HubModel.thumbnail_sha256, HubModel.hidden, HubModel.owner_id)
                                    .where(HubModel.id == model_id))).first()
        if row is None or (row.hidden and not (viewer and (viewer.id == row.owner_id or viewer.is_moderator))):
            raise NotFound(f"There is no model {model_id}.")
        digest = row.thumbnail_sha256
        if digest is None:
            raise NotFound("This model has no preview image.")
        return digest, await self._executors.run_io(self._blobs.read_bytes, digest)

    async def like(self, user: User, model_id: int, liked: bool) -> None:
        """Like or unlike a model; the count follows through the batched counters."""
        async with self._db() as db:
            if await db.get(HubModel, model_id) is None:
                raise NotFound(f"There is no model {model_id}.")
            existing = await db.get(HubLike, (model_id, user.id))
            if liked and existing is None:
                db.add(HubLike(model_id=model_id, user_id=user.id))
                delta = 1
            elif not liked and existing is not None:
                await db.delete(existing)
                delta = -1
            else:
                return
            try:
                await db.commit()
            except IntegrityError:  # a double click raced: the other request counted it
                return
        await self.counters.add(model_id, "likes", delta)

    async def count_download(self, model_id: int) -> None:
        await self.counters.add(model_id, "downloads", 1)

    async def flush_counters(self) -> int:
        """Move pending counts into the database; returns how many models changed."""
        taken = await self.counters.take()
        if not taken:
            return 0
        try:
            async with self._db() as db:
                for (model_id, field), amount in sorted(taken.items()):
                    column = getattr(HubModel, field)
                    await db.execute(update(HubModel).where(HubModel.id == model_id)
                                     .values({field: column + amount}).execution_options(synchronize_session=False))
                await db.commit()
        except Exception:
            # The database is away: put the counts back for the next flush rather than lose them.
            for (model_id, field), amount in taken.items():
                await self.counters.add(model_id, field, amount)
            raise
        models = {model_id for model_id, _ in taken}
        # Details show the new counts at once; list pages keep theirs until they expire (hub_cache_ttl_secs):
        # bumping the generation here would empty the list cache at every flush of a busy site.
        await self._pages.delete(*(f"hub:model:{model_id}" for model_id in models))
        return len(models)

    # -- reads ----------------------------------------------------------------------------------

    async def detail(self, model_id: int, viewer: User | None = None) -> dict[str, Any]:
        """A model with its versions and files (cached)."""
        return json.loads(await self.detail_json(model_id, viewer))

    async def detail_json(self, model_id: int, viewer: User | None = None) -> bytes:
        """The same as JSON bytes: a cache hit is sent as stored, never decoded and encoded again."""
        raw = await self._pages.get(f"hub:model:{model_id}", lambda: self._load_detail(model_id))
        # Our own compact JSON: the key appears like this only at the top level (inside strings `"` is escaped).
        if raw is not None and b'"hidden":true' in raw:
            owner_id = json.loads(raw)["owner"]["id"]
            if viewer is None or not (viewer.id == owner_id or viewer.is_moderator):
                raw = None
        if raw is None:
            raise NotFound(f"There is no model {model_id}.")
        return raw

    async def set_hidden(self, model_id: str, hidden: bool) -> None:
        """A moderator's hide or restore."""
        ident = parse_id(model_id, "target")
        async with self._db() as db:
            changed = (await db.execute(update(HubModel).where(HubModel.id == ident).values(hidden=hidden))).rowcount
            await db.commit()
            rows = await self._files(db, ident) if changed else []
        if not changed:
            raise NotFound(f"There is no model {model_id}.")
        # Hidden means hidden on every path: its files leave the models folder, so no picker lists them
        # and no new job can use them (a worker answers model_unavailable); restoring links them again.
        await self._link(rows, linked=not hidden)
        await self._invalidate(ident)

    async def describe(self, model_ids: list[str]) -> dict[str, dict[str, Any]]:
        """What a moderator's queue shows of each model."""
        ids = [parse_id(i, "target") for i in model_ids]
        async with self._db() as db:
            rows = (await db.execute(select(HubModel, User.username).join(User, User.id == HubModel.owner_id)
                                     .where(HubModel.id.in_(ids)))).all()
        return {str(model.id): _model_json(model, username, summary=True) for model, username in rows}

    async def find_model_id(self, owner: str, slug: str) -> int:
        async with self._db() as db:
            model_id = await db.scalar(select(HubModel.id).join(User, User.id == HubModel.owner_id)
                                       .where(User.username == owner.lower(), HubModel.slug == slug.lower()))
        if model_id is None:
            raise NotFound(f"There is no model {owner}/{slug}.", code="repo_not_found")
        return model_id

    async def list_models(self, query: ListQuery) -> bytes:
        """One page of models matching the query, with the cursor of the next page, as JSON bytes (cached)."""
        generation = await self._pages.generation(GENERATION_KEY)
        params = json.dumps(query.model_dump(), sort_keys=True)
        key = f"hub:list:{generation}:{hashlib.sha1(params.encode()).hexdigest()}"
        return await self._pages.get(key, lambda: self._load_list(query))

    async def file_ref(self, file_id: int, viewer: User | None = None) -> FileRef:
        async with self._db() as db:
            row = (await db.execute(select(HubFile, HubVersion.model_id, HubModel.hidden, HubModel.owner_id)
                                    .join(HubVersion, HubVersion.id == HubFile.version_id)
                                    .join(HubModel, HubModel.id == HubVersion.model_id)
                                    .where(HubFile.id == file_id))).first()
        if row is None or (row.hidden and not (viewer and (viewer.id == row.owner_id or viewer.is_moderator))):
            raise NotFound(f"There is no file {file_id}.")
        file, model_id = row[0], row[1]
        return FileRef(file.id, model_id, file.filename, file.size_bytes, file.sha256, self._blobs.path(file.sha256))

    # -- internals ------------------------------------------------------------------------------

    async def _owned(self, db: AsyncSession, user: User, model_id: int) -> HubModel:
        model = await db.get(HubModel, model_id)
        if model is None:
            raise NotFound(f"There is no model {model_id}.")
        if model.owner_id != user.id:
            raise Forbidden("Only the model's owner may change it.", code="not_owner")
        return model

    async def _invalidate(self, *model_ids: int) -> None:
        await self._pages.bump(GENERATION_KEY)
        await self._pages.delete(*(f"hub:model:{model_id}" for model_id in model_ids))

    async def _drop_unused_blobs(self, shas: set[str]) -> None:
        # A concurrent upload of the same bytes may attach between this check and the unlink; it is rare
        # and visible (the download answers 404), where keeping every blob forever would not be.
        for sha in shas:
            async with self._db() as db:
                used = await db.scalar(select(func.count()).select_from(HubFile).where(HubFile.sha256 == sha))
            if not used:
                await self._executors.run_io(self._blobs.delete, sha)

    async def _load_detail(self, model_id: int) -> dict[str, Any] | None:
        async with self._db() as db:
            row = (await db.execute(select(HubModel, User.username).join(User, User.id == HubModel.owner_id)
                                    .where(HubModel.id == model_id))).first()
            if row is None:
                return None
            model, username = row
            versions = list(await db.scalars(select(HubVersion).where(HubVersion.model_id == model_id)
                                             .order_by(HubVersion.id.desc())))
            files = list(await db.scalars(select(HubFile).where(HubFile.version_id.in_([v.id for v in versions]))
                                          .order_by(HubFile.filename))) if versions else []
        by_version: dict[int, list[HubFile]] = {}
        for file in files:
            by_version.setdefault(file.version_id, []).append(file)
        data = _model_json(model, username)
        data["description_html"] = render_markdown(model.description)
        data["versions"] = [{
            "id": v.id, "name": v.name, "notes": v.notes, "created_at": iso(v.created_at),
            "commit": version_commit(v.id, [(f.filename, f.sha256) for f in by_version.get(v.id, [])]),
            "files": [_file_json(f, engine_name(username, model.slug, v.name, f.filename))
                      for f in by_version.get(v.id, [])],
        } for v in versions]
        return data

    async def _load_list(self, query: ListQuery) -> dict[str, Any]:
        column = {"newest": HubModel.created_at, "downloads": HubModel.downloads, "likes": HubModel.likes}[query.sort]
        stmt = select(HubModel, User.username).join(User, User.id == HubModel.owner_id)
        if query.q.strip():
            words = query.q.strip().lower().split()[:5]
            for word in words:
                stmt = stmt.where(or_(HubModel.name.contains(word, autoescape=True),
                                      HubModel.tags.contains(word, autoescape=True),
                                      HubModel.description.contains(word, autoescape=True)))
        if query.kind:
            stmt = stmt.where(HubModel.kind == query.kind)
        if query.base:
            stmt = stmt.where(HubModel.base == query.base)
        if query.owner:
            stmt = stmt.where(User.username == query.owner.lower())
        # `= false`, not `IS false`: MySQL can use an index for the one, not the other.
        stmt = stmt.where(HubModel.hidden == false())
        if not query.nsfw:
            stmt = stmt.where(HubModel.nsfw == false())
        if query.cursor:
            value, last_id = _decode_cursor(query.cursor)
            if query.sort == "newest":
                try:
                    value = dt.datetime.fromisoformat(str(value))
                except ValueError:
                    raise InvalidInput("`cursor` is not one this server handed out.", code="invalid_cursor") from None
            stmt = stmt.where(or_(column < value, and_(column == value, HubModel.id < last_id)))
        stmt = stmt.order_by(column.desc(), HubModel.id.desc()).limit(query.limit + 1)
        async with self._db() as db:
            rows = (await db.execute(stmt)).all()
        page = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = page[-1][0]
            value = last.created_at.isoformat() if query.sort == "newest" else getattr(last, query.sort)
            next_cursor = _encode_cursor(value, last.id)
        return {"models": [_model_json(model, username, summary=True) for model, username in page],
                "next_cursor": next_cursor}


def _model_json(model: HubModel, username: str, *, summary: bool = False) -> dict[str, Any]:
    # Lists carry the start of the description only: pages stay small however long descriptions are.
    description = model.description[:LIST_DESCRIPTION_CHARS] if summary else model.description
    return {
        "id": model.id,
        "repo_id": f"{username}/{model.slug}",
        "owner": {"id": model.owner_id, "username": username},
        "slug": model.slug,
        "name": model.name,
        "kind": model.kind,
        "base": model.base,
        "description": description,
        "tags": model.tags.split() if model.tags else [],
        "licence": model.licence,
        "nsfw": model.nsfw,
        "hidden": model.hidden,
        "downloads": model.downloads,
        "likes": model.likes,
        "thumbnail_url": (f"/api/hub/models/{model.id}/thumbnail?v={model.thumbnail_sha256[:12]}"
                          if model.thumbnail_sha256 else None),
        "created_at": iso(model.created_at),
        "updated_at": iso(model.updated_at),
    }


def _file_json(file: HubFile, engine: str) -> dict[str, Any]:
    return {
        "id": file.id,
        "filename": file.filename,
        "size_bytes": file.size_bytes,
        "sha256": file.sha256,
        "autov2": file.sha256[:AUTOV2_HEX].upper(),
        "kind": file.kind,
        "base": file.base,
        "tensor_count": file.tensor_count,
        "metadata": json.loads(file.metadata_json or "{}"),
        "download_url": f"/api/hub/files/{file.id}/download",
        # What the Generate page calls a checkpoint (`model`) or a LoRA (`loras[].name`); None for other kinds.
        "engine_name": engine if file.kind in LINKED_KINDS else None,
    }
