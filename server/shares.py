"""Share links: one image anyone with the link may see (`/s/<id>`), without publishing it to the gallery.

Sharing makes that one image readable by anyone (an image grant, as posts do), never the job
or its other images. The photo it was made from shows only when its owner chose so (a
metadata-free copy, `server.originals`). A share of an image whose post a moderator hid is
withheld as the post is (the posts' job guard). The page at `/s/<id>` carries Open Graph
and Twitter-card tags in its HTML (`handlers/frontend.py`), so a link pasted in a chat
shows the picture and title.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.auth import Principal
from server.errors import Forbidden, InvalidInput, NotFound
from server.jobs import image_ref
from server.jobs.kinds import STYLIZE_KIND
from server.jobs.service import JobGuard, JobService
from server.originals import Originals
from server.posts import TITLE_MAX_CHARS, PostService
from server.text import clean_text
from server.store.models import GeneratedImage, GenerationJob, User, iso
from server.store.stylize_tables import Preset, Share
from server.users import public_user

SHARE_ID_BYTES = 9  # 72 random bits: 12 URL-safe characters, unguessable
SHARE_ID_RE = re.compile(r"[A-Za-z0-9_-]{12}")
IMAGE_ID_MAX_CHARS = 32
DEFAULT_TITLE = "Artwork"


class ShareService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], originals: Originals):
        self._db = sessions
        self._originals = originals
        # (principal, job id) -> withhold? (a moderator hid a post of that job)
        self.guards: list[JobGuard] = []

    def wire(self, jobs: JobService, posts: PostService) -> None:
        """A shared image is anyone's to see, unless a moderator hid a post of its job."""
        jobs.add_image_grant(self.may_see_image)
        self.guards.append(posts.withholds_job)

    async def share(self, user: User, image_id: Any, *, title: Any = None, show_original: Any = False
                    ) -> tuple[dict[str, Any], bool]:
        """A link to one of one's own images (the same link again for the same image); True when new."""
        if not isinstance(show_original, bool):
            raise InvalidInput("`show_original` must be true or false.")
        if not isinstance(image_id, str) or not 0 < len(image_id) <= IMAGE_ID_MAX_CHARS:
            raise InvalidInput("`image` must be the id of one of your images.")
        async with self._db() as db:
            image = await db.get(GeneratedImage, image_id)
            if image is None or image.owner_id != user.id:
                raise NotFound(f"No image {image_id} of yours.")
            job = await db.get(GenerationJob, image.job_id)
            existing = await db.scalar(select(Share).where(Share.image_id == image_id))
        settings = json.loads(job.settings)
        title = clean_text(title, "title", TITLE_MAX_CHARS) or _default_title(settings)
        original = await self._originals.public_copy(job) if show_original else None
        async with self._db() as db:
            if existing is not None:
                share = await db.get(Share, existing.id)
                share.title, share.original_sha256 = title, original
                await db.commit()
                return await self._json(db, share), False
            share = Share(id=secrets.token_urlsafe(SHARE_ID_BYTES), owner_id=user.id, job_id=job.id,
                          image_id=image_id, title=title, original_sha256=original)
            db.add(share)
            try:
                await db.commit()
            except IntegrityError:  # shared twice at once: the first link stands
                await db.rollback()
                share = await db.scalar(select(Share).where(Share.image_id == image_id))
                return await self._json(db, share), False
            return await self._json(db, share), True

    async def get(self, principal: Principal | None, share_id: str) -> dict[str, Any]:
        """A share as anyone with the link sees it."""
        async with self._db() as db:
            share = await self._visible(db, principal, share_id)
            return await self._json(db, share)

    async def delete(self, user: User, share_id: str) -> None:
        """Remove a link (its owner or a moderator); the image is private again unless a post shows it."""
        async with self._db() as db:
            share = await db.get(Share, share_id) if SHARE_ID_RE.fullmatch(share_id) else None
            if share is None:
                raise NotFound(f"No share {share_id[:20]}.")
            if share.owner_id != user.id and not user.is_moderator:
                raise Forbidden("Only the owner or a moderator may remove a share.")
            await db.delete(share)
            await db.commit()

    async def original(self, principal: Principal | None, share_id: str) -> tuple[str, bytes]:
        """The shown copy of the photo, when the owner chose to show it."""
        async with self._db() as db:
            share = await self._visible(db, principal, share_id)
        if share.original_sha256 is None:
            raise NotFound("The owner did not share the original photo.")
        return share.original_sha256, await self._originals.read(share.original_sha256)

    async def may_see_image(self, principal: Principal | None, image: GeneratedImage) -> bool:
        """A shared image is anyone's to see (the jobs' image grant)."""
        async with self._db() as db:
            share = await db.scalar(select(Share).where(Share.image_id == image.id))
        return share is not None and not await self._withheld(principal, share.job_id)

    async def _visible(self, db: AsyncSession, principal: Principal | None, share_id: str) -> Share:
        share = await db.get(Share, share_id) if SHARE_ID_RE.fullmatch(share_id) else None
        if share is None or await self._withheld(principal, share.job_id):
            raise NotFound(f"No share {share_id[:20]}.")
        return share

    async def _withheld(self, principal: Principal | None, job_id: str) -> bool:
        for guard in self.guards:
            if await guard(principal, job_id):
                return True
        return False

    async def _json(self, db: AsyncSession, share: Share) -> dict[str, Any]:
        owner = await db.get(User, share.owner_id)
        image = await db.get(GeneratedImage, share.image_id)
        job = await db.get(GenerationJob, share.job_id)
        settings = json.loads(job.settings)
        preset = None
        if job.kind == STYLIZE_KIND:
            # Presets are retired, never deleted; the job's copy of the English title is the fallback.
            row = await db.get(Preset, settings["preset_id"])
            title = ({"en": row.title_en, "zh": row.title_zh or row.title_en} if row is not None
                     else {"en": settings["preset_title"], "zh": settings["preset_title"]})
            preset = {"id": settings["preset_id"], "name": settings["preset"], "title": title}
        return {
            "id": share.id, "url": f"/s/{share.id}", "title": share.title, "owner": public_user(owner),
            "image": image_ref(image), "job": job.id, "kind": job.kind, "preset": preset,
            "subject": settings.get("subject", ""),
            "original_url": f"/api/shares/{share.id}/original" if share.original_sha256 else None,
            "created_at": iso(share.created_at),
        }


def _default_title(settings: dict[str, Any]) -> str:
    """The style's name for a stylized photo, else the prompt's start."""
    title = settings.get("preset_title") or settings.get("prompt") or DEFAULT_TITLE
    return title[:TITLE_MAX_CHARS].strip() or DEFAULT_TITLE
