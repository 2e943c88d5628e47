"""The model hub: models, versions, uploads (tus and PUT) and downloads (also Hugging Face-compatible)."""

from __future__ import annotations

from typing import Any, Awaitable, Callable

from pydantic import ValidationError
from tornado.iostream import StreamClosedError

from handlers import zero_copy
from handlers.base import IMAGE_TYPES, APIHandler
from server.errors import InvalidInput
from server.ids import as_id, parse_id
from server.modelhub.catalog import FileRef
from server.modelhub.downloads import content_disposition, parse_range, read_range, sendfile_range
from server.modelhub.schemas import ListQuery, ModelPatch, NewModel, NewVersion
from server.modelhub.service import ModelHub
from server.modelhub.uploads import PutUpload, TusAppend, parse_tus_checksum, parse_tus_metadata

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum,expiration"
TUS_CONTENT_TYPE = "application/offset+octet-stream"
# Downloads are revalidated with the ETag (a 304 costs nothing); the bytes of a file id never change.
DOWNLOAD_CACHE_CONTROL = "private, no-cache"


class HubHandler(APIHandler):
    @property
    def modelhub(self) -> ModelHub:
        return self.runtime.modelhub

    def write_json_bytes(self, data: bytes) -> None:
        """JSON already encoded (a cache hit is sent as stored)."""
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(data)


class ModelsHandler(HubHandler):
    async def get(self) -> None:
        """Find models: `q`, `kind`, `base`, `owner`, `sort` (newest|downloads|likes), `cursor`, `limit`."""
        args = {name: self.get_query_argument(name) for name in ListQuery.model_fields
                if self.get_query_argument(name, None) is not None}
        try:
            query = ListQuery.model_validate(args)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidInput(f"`{first['loc'][0]}`: {first['msg']}.") from None
        self.write_json_bytes(await self.modelhub.catalog.list_models(query))

    async def post(self) -> None:
        """Create a model (and its first version); 201 with the model."""
        user = self.require_user().user
        self.write_json({"model": await self.modelhub.catalog.create_model(user, self.parse(NewModel))}, status=201)


class ModelHandler(HubHandler):
    async def get(self, model_id: str) -> None:
        """A model with its versions and files."""
        viewer = self.viewer
        self.write_json_bytes(b'{"model":' + await self.modelhub.catalog.detail_json(int(model_id), viewer) + b"}")

    async def patch(self, model_id: str) -> None:
        """Edit a model (owner only)."""
        user = self.require_user().user
        model = await self.modelhub.catalog.update_model(user, int(model_id), self.parse(ModelPatch))
        self.write_json({"model": model})

    async def delete(self, model_id: str) -> None:
        """Delete a model with its versions and files (owner only)."""
        user = self.require_user().user
        await self.modelhub.catalog.delete_model(user, int(model_id))
        self.set_status(204)
        self.finish()


class ThumbnailHandler(HubHandler):
    max_body_bytes = 10 * 1024 * 1024

    async def get(self, model_id: str) -> None:
        """The preview image (WebP); immutable when asked for by its `?v=` digest."""
        viewer = self.viewer
        digest, data = await self.modelhub.catalog.thumbnail(int(model_id), viewer)
        self.write_blob(data, digest, "image/webp", immutable=self.get_query_argument("v", None) == digest[:12],
                        shared=False)

    async def put(self, model_id: str) -> None:
        """Set the preview image from the raw body (PNG, JPEG, WebP or GIF; owner only)."""
        user = self.require_user().user
        self.require_media_type(IMAGE_TYPES, "the image as the body")
        self.write_json({"model": await self.modelhub.catalog.set_thumbnail(user, int(model_id), self.body)})


class VersionsHandler(HubHandler):
    async def post(self, model_id: str) -> None:
        """Add a version to a model (owner only)."""
        user = self.require_user().user
        version = await self.modelhub.catalog.add_version(user, int(model_id), self.parse(NewVersion))
        self.write_json({"version": version}, status=201)


class LikeHandler(HubHandler):
    async def put(self, model_id: str) -> None:
        """Like a model (idempotent)."""
        await self.modelhub.catalog.like(self.require_user().user, int(model_id), True)
        self.set_status(204)
        self.finish()

    async def delete(self, model_id: str) -> None:
        """Take a like back."""
        await self.modelhub.catalog.like(self.require_user().user, int(model_id), False)
        self.set_status(204)
        self.finish()


class PutFileHandler(HubHandler):
    """`PUT /api/hub/versions/<id>/files/<name>` with the file as the raw body (`curl -T`)."""

    _upload: PutUpload | None = None
    _done = False

    async def prepare(self) -> None:
        self.principal = await self.resolve_principal()
        user = self.require_user().user
        version_id, filename = self.path_args
        length = self.request.headers.get("Content-Length")
        self.accept_large_body(self.modelhub.uploads.max_file_bytes)
        self._upload = await self.modelhub.uploads.begin_put(
            user, int(version_id), filename, as_id(length))

    async def data_received(self, chunk: bytes) -> None:
        if self._upload is not None:
            await self._upload.write(chunk)

    async def put(self, version_id: str, filename: str) -> None:
        """Store, check and publish the file; 201 with it, or the exact reason it was refused."""
        assert self._upload is not None
        self._done = True
        self.write_json({"file": await self._upload.finish()}, status=201)

    def on_finish(self) -> None:
        super().on_finish()
        self._abort_if_unfinished()

    def on_connection_close(self) -> None:
        self._abort_if_unfinished()

    def _abort_if_unfinished(self) -> None:
        if self._upload is not None and not self._done:
            self._done = True
            self.runtime.spawn(self._upload.abort())


class TusHandler(HubHandler):
    """tus 1.0.0: every answer carries Tus-Resumable; OPTIONS tells what this server supports."""

    def set_default_headers(self) -> None:
        self.set_header("Tus-Resumable", TUS_VERSION)

    async def options(self, *_args: str) -> None:
        """What the server supports (tus discovery)."""
        self.set_header("Tus-Version", TUS_VERSION)
        self.set_header("Tus-Extension", TUS_EXTENSIONS)
        self.set_header("Tus-Max-Size", str(self.modelhub.uploads.max_file_bytes))
        self.set_header("Tus-Checksum-Algorithm", "sha1,sha256,md5")
        self.set_status(204)
        self.finish()

    def check_tus_version(self) -> None:
        if self.request.method != "OPTIONS" and self.request.headers.get("Tus-Resumable") != TUS_VERSION:
            self.set_header("Tus-Version", TUS_VERSION)
            raise InvalidInput(f"Send `Tus-Resumable: {TUS_VERSION}`.", code="tus_version")

    def set_expires(self, upload: Any) -> None:
        self.set_header("Upload-Expires", upload.expires_at.strftime("%a, %d %b %Y %H:%M:%S GMT"))


class TusCreateHandler(TusHandler):
    async def post(self) -> None:
        """tus creation: `Upload-Length` and `Upload-Metadata` (filename, version_id); 201 with Location."""
        self.check_tus_version()
        user = self.require_user().user
        # Deferred length (no Upload-Length) is not supported.
        length = parse_id(self.request.headers.get("Upload-Length"), "Upload-Length")
        metadata = parse_tus_metadata(self.request.headers.get("Upload-Metadata", ""))
        upload = await self.modelhub.uploads.create(user, length, metadata)
        self.set_header("Location", f"/api/hub/uploads/{upload.id}")
        self.set_expires(upload)
        self.set_status(201)
        self.finish()


class TusUploadHandler(TusHandler):
    _append: TusAppend | None = None
    _done = False

    async def prepare(self) -> None:
        if self.request.method != "PATCH":
            await super().prepare()
            return
        self.principal = await self.resolve_principal()
        self.check_tus_version()
        user = self.require_user().user
        self.require_media_type({TUS_CONTENT_TYPE}, "a PATCH's chunk")
        offset = parse_id(self.request.headers.get("Upload-Offset"), "Upload-Offset")
        self.accept_large_body(self.modelhub.uploads.max_file_bytes)
        checksum = parse_tus_checksum(self.request.headers.get("Upload-Checksum"))
        length = self.request.headers.get("Content-Length", "")
        self._append = await self.modelhub.uploads.begin_append(
            user, self.path_args[0], offset, checksum, as_id(length))

    async def data_received(self, chunk: bytes) -> None:
        if self._append is not None:
            await self._append.write(chunk)
        else:
            super().data_received(chunk)

    async def head(self, upload_id: str) -> None:
        """How many bytes the server holds: where the client resumes."""
        self.check_tus_version()
        upload, offset = await self.modelhub.uploads.status(self.require_user().user, upload_id)
        self.set_header("Upload-Offset", str(offset))
        self.set_header("Upload-Length", str(upload.length))
        self.set_header("Cache-Control", "no-store")
        self.set_expires(upload)
        self.finish()

    async def patch(self, upload_id: str) -> None:
        """Append bytes at Upload-Offset; 204 with the new offset (and Hub-File-Id once the file is published)."""
        assert self._append is not None
        self._done = True
        offset, file = await self._append.finish()
        self.set_header("Upload-Offset", str(offset))
        self.set_expires(self._append.upload)
        if file is not None:
            self.set_header("Hub-File-Id", str(file["id"]))
        self.set_status(204)
        self.finish()

    async def delete(self, upload_id: str) -> None:
        """tus termination: drop the upload and its bytes."""
        self.check_tus_version()
        await self.modelhub.uploads.terminate(self.require_user().user, upload_id)
        self.set_status(204)
        self.finish()

    def on_finish(self) -> None:
        super().on_finish()
        self._keep_partial()

    def on_connection_close(self) -> None:
        self._keep_partial()

    def _keep_partial(self) -> None:
        if self._append is not None and not self._done:
            self._done = True
            self.runtime.spawn(self._append.interrupted())


class FileSender(HubHandler):
    """Streams a stored file: ETag = sha256, one byte range, conditional requests, HEAD.

    Over plain HTTP the body goes with sendfile() (no byte passes through Python); over TLS, or if an output
    transform changed the framing, in chunks read off the event loop."""

    async def send_file(self, ref: FileRef, *, head: bool) -> None:
        self.set_header("ETag", f'"{ref.sha256}"')
        self.set_header("Accept-Ranges", "bytes")
        self.set_header("Content-Type", "application/octet-stream")
        self.set_header("Content-Disposition", content_disposition(ref.filename))
        self.set_header("Cache-Control", DOWNLOAD_CACHE_CONTROL)
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        wanted = self.request.headers.get("Range")
        if_range = self.request.headers.get("If-Range")
        if wanted and if_range is not None and if_range.strip() != f'"{ref.sha256}"':
            wanted = None  # the client's partial copy is of other bytes: send the whole file
        byte_range = parse_range(wanted, ref.size_bytes)
        start, length = (byte_range.start, byte_range.length) if byte_range else (0, ref.size_bytes)
        if byte_range is not None:
            self.set_status(206)
            self.set_header("Content-Range", f"bytes {byte_range.start}-{byte_range.end}/{ref.size_bytes}")
        accel = None if head else self.modelhub.accel_redirect(ref.path)
        if accel is not None:
            # nginx sends the bytes (and answers Range and If-Range itself, from the same file): no body here.
            # Counted as a download when the file's last byte is asked for, as below when it goes out.
            if start + length == ref.size_bytes:
                await self.modelhub.catalog.count_download(ref.model_id)
            self.set_status(200)
            self.clear_header("Content-Range")
            self.set_header("X-Accel-Redirect", accel)
            self.finish()
            return
        self.set_header("Content-Length", str(length))
        if head:
            self.finish()
            return
        last_byte = start + length == ref.size_bytes

        async def count_download() -> None:
            # Counted as the file's last bytes go out (a resumed or ranged download counts once, a probe
            # never), before they are written: a client holding every byte may ask for the count at once.
            if last_byte:
                await self.modelhub.catalog.count_download(ref.model_id)

        try:
            if length > 0 and zero_copy.usable(self):
                await self.flush()  # the headers, through Tornado (and its output transforms)
                if zero_copy.headers_unchanged(self, length):
                    await self._sendfile_body(ref, start, length, count_download)
                    return
            sent = 0
            async for chunk in read_range(self.modelhub.executors, ref.path, start, length):
                sent += len(chunk)
                if sent == length:
                    await count_download()
                self.write(chunk)
                await self.flush()  # a chunk or two in memory at a time, whatever the file's size
            await self.finish()
        except StreamClosedError:
            return  # the client went away, mid-file or (normal) right after the last byte

    async def _sendfile_body(self, ref: FileRef, start: int, length: int,
                             before_last: Callable[[], Awaitable[None]]) -> None:
        """The body straight from the page cache to the socket (sendfile), then Tornado finishes the response."""
        stream = self.request.connection.stream
        try:
            with zero_copy.socket_fd(self) as fd:
                await sendfile_range(self.modelhub.executors, ref.path, fd, start, length, before_last)
        except ConnectionError:  # broken pipe, reset, aborted
            stream.close()  # the client went away mid-file: the connection cannot carry another response
            return
        if stream.closed():
            return
        zero_copy.mark_body_sent(self.request.connection, length)
        await self.finish()


class DownloadHandler(FileSender):
    async def get(self, file_id: str) -> None:
        """The file's bytes (whole or one `Range`)."""
        viewer = self.viewer
        await self.send_file(await self.modelhub.catalog.file_ref(int(file_id), viewer), head=False)

    async def head(self, file_id: str) -> None:
        """The file's headers: size, ETag (sha256), name."""
        viewer = self.viewer
        await self.send_file(await self.modelhub.catalog.file_ref(int(file_id), viewer), head=True)


class FileHandler(HubHandler):
    async def delete(self, file_id: str) -> None:
        """Delete one file (owner only)."""
        await self.modelhub.catalog.delete_file(self.require_user().user, int(file_id))
        self.set_status(204)
        self.finish()


class HfRepoInfoHandler(HubHandler):
    async def get(self, owner: str, slug: str, revision: str | None = None) -> None:
        """Hugging Face `model_info`: the revision's commit id and files."""
        self.write_json(await self.modelhub.hf.repo_info(owner, slug, revision))


class HfTreeHandler(HubHandler):
    async def get(self, owner: str, slug: str, revision: str, path: str | None = None) -> None:
        """Hugging Face `list_repo_tree`: the files of a revision."""
        self.write_json(await self.modelhub.hf.tree(owner, slug, revision, path or ""))


class HfResolveHandler(FileSender):
    async def _resolve(self, owner: str, slug: str, revision: str, filename: str, head: bool) -> None:
        ref, commit = await self.modelhub.hf.resolve(owner, slug, revision, filename)
        self.set_header("X-Repo-Commit", commit)
        self.set_header("X-Linked-Etag", f'"{ref.sha256}"')
        self.set_header("X-Linked-Size", str(ref.size_bytes))
        await self.send_file(ref, head=head)

    async def get(self, owner: str, slug: str, revision: str, filename: str) -> None:
        """Hugging Face `resolve`: the file's bytes, with the headers `hf_hub_download` reads."""
        await self._resolve(owner, slug, revision, filename, head=False)

    async def head(self, owner: str, slug: str, revision: str, filename: str) -> None:
        """Hugging Face metadata probe: commit, ETag (sha256) and size."""
        await self._resolve(owner, slug, revision, filename, head=True)


OWNER = r"([a-z0-9_]{3,32})"
SLUG = r"([a-z0-9._-]{1,64})"
default_handlers = [
    (r"/api/hub/models", ModelsHandler),
    (r"/api/hub/models/([0-9]{1,18})", ModelHandler),
    (r"/api/hub/models/([0-9]{1,18})/versions", VersionsHandler),
    (r"/api/hub/models/([0-9]{1,18})/thumbnail", ThumbnailHandler),
    (r"/api/hub/models/([0-9]{1,18})/like", LikeHandler),
    (r"/api/hub/versions/([0-9]{1,18})/files/([^/]+)", PutFileHandler),
    (r"/api/hub/uploads", TusCreateHandler),
    (r"/api/hub/uploads/([0-9a-f]{32})", TusUploadHandler),
    (r"/api/hub/files/([0-9]{1,18})", FileHandler),
    (r"/api/hub/files/([0-9]{1,18})/download", DownloadHandler),
    (rf"/api/models/{OWNER}/{SLUG}", HfRepoInfoHandler),
    (rf"/api/models/{OWNER}/{SLUG}/revision/([^/]+)", HfRepoInfoHandler),
    (rf"/api/models/{OWNER}/{SLUG}/tree/([^/]+)", HfTreeHandler),
    (rf"/api/models/{OWNER}/{SLUG}/tree/([^/]+)/([^?]+)", HfTreeHandler),
    (rf"/{OWNER}/{SLUG}/resolve/([^/]+)/([^/]+)", HfResolveHandler),
]
