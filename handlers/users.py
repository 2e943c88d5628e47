"""Profiles: edit my profile and avatar, read anyone's public profile and avatar."""

from __future__ import annotations

from pydantic import BaseModel

from handlers.base import IMAGE_TYPES, APIHandler
from handlers.render import user_json

# Avatar URLs carry the content digest, so the bytes behind one URL never change.


class ProfileUpdate(BaseModel):
    display_name: str | None = None
    bio: str | None = None
    email: str | None = None


class MeHandler(APIHandler):
    async def get(self) -> None:
        """The signed-in user. Also hands a browser its XSRF cookie (a bearer-token script needs none)."""
        if self.bearer_token() is None:
            self.xsrf_token  # noqa: B018 - reading it sets the `_xsrf` cookie
        principal = self.require_user()
        self.write_json({"user": user_json(principal.user, private=True)})

    async def patch(self) -> None:
        """Change display name, bio or e-mail."""
        principal = self.require_user()
        body = self.parse(ProfileUpdate)
        user = await self.users.update_profile(
            principal.user.id, display_name=body.display_name, bio=body.bio, email=body.email,
            clear_email="email" in body.model_fields_set and body.email is None,
        )
        self.write_json({"user": user_json(user, private=True)})


class MyAvatarHandler(APIHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.max_avatar_bytes

    async def put(self) -> None:
        """Upload an avatar as the raw request body."""
        principal = self.require_user()
        self.require_media_type(IMAGE_TYPES, "the image as the body")
        user = await self.users.set_avatar(principal.user.id, self.body)
        self.write_json({"user": user_json(user, private=True)})

    async def delete(self) -> None:
        """Remove the avatar."""
        principal = self.require_user()
        user = await self.users.clear_avatar(principal.user.id)
        self.write_json({"user": user_json(user, private=True)})


class UsersHandler(APIHandler):
    async def get(self) -> None:
        """Users whose name starts with `q` (signed in): the @mention autocomplete."""
        self.require_user()
        found = await self.users.search(self.get_argument("q", ""))
        self.write_json({"users": [user_json(user) for user in found]})


class UserHandler(APIHandler):
    async def get(self, username: str) -> None:
        """A public profile, with follower, following and post counts."""
        user = await self.users.get_by_username(username)
        viewer = self.viewer
        stats = await self.runtime.community.follows.profile_stats(user, viewer)
        self.write_json({"user": user_json(user), "stats": stats})


class AvatarHandler(APIHandler):
    async def get(self, username: str) -> None:
        """The avatar image (WebP)."""
        digest, data = await self.users.avatar_bytes(username)
        self.write_blob(data, digest, "image/webp", immutable=self.get_argument("v", None) is not None, shared=True)


default_handlers = [
    (r"/api/me", MeHandler),
    (r"/api/me/avatar", MyAvatarHandler),
    (r"/api/users", UsersHandler),
    (r"/api/users/([a-zA-Z0-9_]{1,32})", UserHandler),
    (r"/api/users/([a-zA-Z0-9_]{1,32})/avatar", AvatarHandler),
]
