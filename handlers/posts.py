"""Posts: publish, the gallery, a post's page, likes."""

from __future__ import annotations

from pydantic import BaseModel, Field, StrictBool, StrictStr

from handlers.base import APIHandler
from server.ids import parse_id
from server.posts import GalleryQuery, PostService


class PublishBody(BaseModel):
    """Images of one's own finished job to publish (all of them without `images`)."""

    job: StrictStr = Field(max_length=32)
    images: list[StrictStr] | None = None
    title: StrictStr
    description: StrictStr = ""
    tags: list[StrictStr] | None = None
    nsfw: StrictBool = False
    show_original: StrictBool = False  # the photo a stylized image was made from, shown on the post


class EditBody(BaseModel):
    title: StrictStr | None = None
    description: StrictStr | None = None
    tags: list[StrictStr] | None = None
    nsfw: StrictBool | None = None
    show_original: StrictBool | None = None


class PostsBase(APIHandler):
    @property
    def posts(self) -> PostService:
        return self.runtime.community.posts


class PostsHandler(PostsBase):
    async def get(self) -> None:
        """The gallery: ?sort=new|top &period=day|week|all &tag= &model= &user= &feed=following &cursor= &limit="""
        query = GalleryQuery(
            sort=self.get_query_argument("sort", "new"),
            period=self.get_query_argument("period", "all"),
            tag=self.get_query_argument("tag", None) or None,
            model=self.get_query_argument("model", None) or None,
            owner=self.get_query_argument("user", None) or None,
            following=self.get_query_argument("feed", "") == "following",
            cursor=self.get_query_argument("cursor", None) or None,
            limit=parse_id(self.get_query_argument("limit", "24"), "limit"),
        )
        posts, next_cursor = await self.posts.gallery(self.viewer, query)
        self.write_json({"posts": posts, "next_cursor": next_cursor})

    async def post(self) -> None:
        """Publish images of one's own finished job."""
        user = self.require_user().user
        body = self.parse(PublishBody)
        post = await self.posts.publish(user, body.job, body.images, title=body.title, description=body.description,
                                        tags=body.tags, nsfw=body.nsfw, show_original=body.show_original)
        self.write_json({"post": post}, status=201)


class PostHandler(PostsBase):
    async def get(self, post_id: str) -> None:
        self.write_json({"post": await self.posts.get(self.viewer, int(post_id))})

    async def patch(self, post_id: str) -> None:
        """Edit title, description, tags or the NSFW flag (owner)."""
        user = self.require_user().user
        body = self.parse(EditBody)
        post = await self.posts.edit(user, int(post_id), title=body.title, description=body.description,
                                     tags=body.tags, nsfw=body.nsfw, show_original=body.show_original)
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
        self.write_blob(data, digest, "image/webp", immutable=False, shared=False)  # the owner may stop showing it


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
