"""Posts: publish, the gallery, a post's page, likes."""

from __future__ import annotations

from handlers.base import APIHandler
from server.errors import InvalidInput
from server.posts import GalleryQuery, PostService


class PostsBase(APIHandler):
    @property
    def posts(self) -> PostService:
        return self.runtime.community.posts

    @property
    def viewer(self):  # type: ignore[no-untyped-def]
        return self.principal.user if self.principal else None


class PostsHandler(PostsBase):
    async def get(self) -> None:
        """The gallery: ?sort=new|top &period=day|week|all &tag= &model= &user= &feed=following &cursor= &limit="""
        limit = self.get_query_argument("limit", "24")
        if not limit.isdigit():
            raise InvalidInput("`limit` must be a positive integer.")
        query = GalleryQuery(
            sort=self.get_query_argument("sort", "new"),
            period=self.get_query_argument("period", "all"),
            tag=self.get_query_argument("tag", None) or None,
            model=self.get_query_argument("model", None) or None,
            owner=self.get_query_argument("user", None) or None,
            following=self.get_query_argument("feed", "") == "following",
            cursor=self.get_query_argument("cursor", None) or None,
            limit=int(limit),
        )
        posts, next_cursor = await self.posts.gallery(self.viewer, query)
        self.write_json({"posts": posts, "next_cursor": next_cursor})

    async def post(self) -> None:
        """Publish images of one's own finished job."""
        user = self.require_user().user
        body = self.json_body()
        post = await self.posts.publish(user, body.get("job"), body.get("images"), title=body.get("title"),
                                        description=body.get("description", ""), tags=body.get("tags"),
                                        nsfw=body.get("nsfw", False), show_original=body.get("show_original", False))
        self.write_json({"post": post}, status=201)


class PostHandler(PostsBase):
    async def get(self, post_id: str) -> None:
        self.write_json({"post": await self.posts.get(self.viewer, int(post_id))})

    async def patch(self, post_id: str) -> None:
        """Edit title, description, tags or the NSFW flag (owner)."""
        user = self.require_user().user
        body = self.json_body()
        post = await self.posts.edit(user, int(post_id), title=body.get("title"),
                                     description=body.get("description"), tags=body.get("tags"),
                                     nsfw=body.get("nsfw"), show_original=body.get("show_original"))
        self.write_json({"post": post})

    async def delete(self, post_id: str) -> None:
        """Delete (owner or moderator)."""
        await self.posts.delete(self.require_user().user, int(post_id))
        self.set_status(204)
        self.finish()


class PostOriginalHandler(PostsBase):
    async def get(self, post_id: str) -> None:
        """The photo a stylize post was made from, when its owner chose to show it (WebP, no metadata)."""
        digest, data = await self.posts.original(self.viewer, int(post_id))
        self.write_blob(data, digest, "image/webp", "no-cache")  # the owner may stop showing it


class LikeHandler(PostsBase):
    async def put(self, post_id: str) -> None:
        self.write_json(await self.posts.like(self.require_user().user, int(post_id), True))

    async def delete(self, post_id: str) -> None:
        self.write_json(await self.posts.like(self.require_user().user, int(post_id), False))


default_handlers = [
    (r"/api/posts", PostsHandler),
    (r"/api/posts/([0-9]{1,18})", PostHandler),
    (r"/api/posts/([0-9]{1,18})/like", LikeHandler),
    (r"/api/posts/([0-9]{1,18})/original", PostOriginalHandler),
]
