"""The base handlers: service access, authentication, JSON bodies and the one error shape."""

from __future__ import annotations

import http
import json
import logging
from typing import Any, Collection, TypeVar

from pydantic import BaseModel, ValidationError
from tornado import web

from server.auth import AuthService, Principal
from server.errors import (NOT_REQUEST_FAILURES, AppError, InvalidInput, NotFound, PayloadTooLarge,
                           Unauthenticated, UnsupportedMediaType)
from server.runtime import Runtime
from server.store.models import User
from server.tokens import TokenService
from server.users import UserService

log = logging.getLogger(__name__)

SESSION_COOKIE = "va_session"
BEARER_PREFIX = "bearer "
# Oversized bodies up to this size are read and discarded so the client reads the 413; larger ones are cut off.
DRAIN_LIMIT_BYTES = 64 * 1024 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)
# The image formats people upload (avatars, hub previews, photos), by Content-Type.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
# A year: what `immutable` content is kept for (the URL changes when the bytes do).
IMMUTABLE_MAX_AGE_SECS = 365 * 24 * 3600

# Tornado raises HTTPError for protocol problems; these give them stable codes.
HTTP_ERROR_CODES = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
}


# Security headers (one place for every answer: pages, assets, API, errors, downloads, the socket's upgrade).
# The built app has no inline script and loads nothing from other hosts. Styles need 'unsafe-inline':
# CodeMirror (the collaborative editor) injects <style> elements at run time and Element Plus sets style
# attributes (the browser tests see both blocked without it); a style cannot run script. Images: `blob:`
# for the live previews and picked photos (URL.createObjectURL), `data:` for inline icons. 'self' in
# connect-src covers the WebSocket to the same host (CSP Level 3).
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders(web.OutputTransform):
    """Adds SECURITY_HEADERS to every response the application writes (installed with `add_transform`)."""

    def transform_first_chunk(self, status_code: int, headers, chunk: bytes, finishing: bool):  # type: ignore[no-untyped-def]
        for name, value in SECURITY_HEADERS.items():
            if name not in headers:  # (MutableMapping.setdefault raises and catches a KeyError for each)
                headers[name] = value
        return status_code, headers, chunk


class BaseHandler(web.RequestHandler):
    """Typed access to the services and the signed-in principal."""

    principal: Principal | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Tornado checks SUPPORTED_METHODS first, before XSRF, prepare() or reading the body; narrowed to the
        # verbs a handler implements, a method it lacks is a plain 405 (with Allow), never a 403 from the
        # XSRF check or whatever prepare() does. Handlers that implement none (NotFoundHandler) keep them all.
        super().__init_subclass__(**kwargs)
        implemented = tuple(method for method in web.RequestHandler.SUPPORTED_METHODS
                            if getattr(cls, method.lower()) is not getattr(web.RequestHandler, method.lower()))
        if implemented:
            cls.SUPPORTED_METHODS = implemented

    @property
    def runtime(self) -> Runtime:
        return self.settings["runtime"]

    @property
    def users(self) -> UserService:
        return self.runtime.users

    @property
    def auth(self) -> AuthService:
        return self.runtime.auth

    @property
    def tokens(self) -> TokenService:
        return self.runtime.tokens

    @property
    def client_ip(self) -> str:
        """The client's address: the peer, or what a trusted proxy forwarded (``trusted_proxies``)."""
        return self.settings["client_addresses"].of_request(self.request)

    def bearer_token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        if header.lower().startswith(BEARER_PREFIX):
            return header[len(BEARER_PREFIX):].strip()
        return None

    async def resolve_principal(self) -> Principal | None:
        """Bearer token first (scripts), then the session cookie (browsers)."""
        token = self.bearer_token()
        if token is not None:
            principal = await self.auth.principal_for_token(token)
            if principal is None:
                raise Unauthenticated("The API token is invalid or revoked.", code="invalid_token")
            return principal
        secret = self.get_signed_cookie(SESSION_COOKIE, max_age_days=self.runtime.settings.session_days)
        if secret is None:
            return None
        return await self.auth.principal_for_session(secret.decode())

    def check_xsrf_cookie(self) -> None:
        # A bearer token is not sent by browsers on their own, so it needs no XSRF proof.
        if self.bearer_token() is None:
            super().check_xsrf_cookie()

    def require_user(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("Sign in first.")
        return self.principal

    def announce_allowed(self, status_code: int) -> None:
        """RFC 9110: a 405 lists the methods the resource has (those this handler implements)."""
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.SUPPORTED_METHODS))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.announce_allowed(status_code)
        super().write_error(status_code, **kwargs)

    async def _execute(self, transforms: list, *args: bytes, **kwargs: bytes) -> None:
        # Tornado answers only Exceptions; a BaseException (a native library's panic) escaped unanswered
        # and the client waited forever. Answered here as any unknown error: logged, then a 500.
        try:
            await super()._execute(transforms, *args, **kwargs)
        except NOT_REQUEST_FAILURES:
            raise
        except BaseException as exc:
            self._handle_request_exception(exc)


@web.stream_request_body
class APIHandler(BaseHandler):
    """JSON API handler.

    Bodies are streamed so an oversized one is refused with 413 from its
    Content-Length, before it is read, rather than buffered first.
    """

    max_body_bytes: int | None = None  # None: the configured JSON limit

    def initialize(self) -> None:
        self._body = bytearray()
        self._discard_body = False
        self._small_reads: int | None = None

    @property
    def body_limit(self) -> int:
        return self.max_body_bytes or self.runtime.settings.max_json_body_bytes

    async def prepare(self) -> None:
        length = self.request.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > self.body_limit:
            refusal = PayloadTooLarge(
                f"The request body is {int(length):,} bytes; at most {self.body_limit:,} are accepted."
            )
            if int(length) > DRAIN_LIMIT_BYTES:
                raise refusal
            # Answering before the body is read makes most clients see a reset instead of the 413,
            # so a moderately large body is read and thrown away, then refused.
            self._discard_body = True
            self.request.connection.set_max_body_size(int(length))
            setattr(self, self.request.method.lower(), self._refuse(refusal))
            return
        # Chunked bodies without a length are cut off by Tornado at the same bound.
        self.request.connection.set_max_body_size(self.body_limit)
        self.principal = await self.resolve_principal()

    @staticmethod
    def _refuse(error: AppError):
        async def refuse(*_args: Any, **_kwargs: Any) -> None:
            raise error
        return refuse

    def accept_large_body(self, max_bytes: int) -> None:
        """Take a body of up to `max_bytes` (a model upload), read from the socket in large pieces.

        The server reads sockets 64 KiB at a time, which suits small requests (server/app.py says why); for a
        body of gigabytes that is a read and a buffer append per 64 KiB, so this request's connection reads in
        the server's body chunk size until it finishes."""
        connection = self.request.connection
        connection.set_max_body_size(max_bytes)
        stream, params = getattr(connection, "stream", None), getattr(connection, "params", None)
        if stream is not None and params is not None and params.chunk_size > stream.read_chunk_size:
            self._small_reads = stream.read_chunk_size
            stream.read_chunk_size = params.chunk_size

    def on_finish(self) -> None:
        if self._small_reads is not None:  # the connection may carry more (small) requests
            self.request.connection.stream.read_chunk_size = self._small_reads

    def data_received(self, chunk: bytes) -> None:
        if not self._discard_body:
            self._body += chunk

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    @property
    def media_type(self) -> str:
        """The request's Content-Type without parameters, lower-cased ('' when there is none)."""
        return self.request.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def require_media_type(self, accepted: Collection[str], what: str = "the body") -> str:
        """The media type, if one of ``accepted`` (an entry ending in `/*` takes that whole family)."""
        media_type = self.media_type
        if not any(media_type == kind or (kind.endswith("/*") and media_type.startswith(kind[:-1]))
                   for kind in accepted):
            raise UnsupportedMediaType(f"Send {what} with Content-Type {' or '.join(sorted(accepted))}, "
                                       f"not {media_type or 'none'!r}.")
        return media_type

    @property
    def viewer(self) -> User | None:
        """The signed-in user, or None for an anonymous request."""
        return self.principal.user if self.principal else None

    def json_body(self) -> dict[str, Any]:
        if not self._body:
            return {}
        try:
            value = json.loads(self._body)
        except ValueError as exc:  # bad UTF-8 or JSON, or an integer of more than 4,300 digits (Python's limit)
            raise InvalidInput(f"The body is not valid JSON: {str(exc)[:200]}.", code="invalid_json") from None
        if not isinstance(value, dict):
            raise InvalidInput("The body must be a JSON object.", code="invalid_json")
        return value

    def parse(self, model: type[ModelT]) -> ModelT:
        """The JSON body validated against a request model; errors name the field."""
        try:
            return model.model_validate(self.json_body())
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "body"
            raise InvalidInput(f"`{field}`: {first['msg']}.", data={"field": field}) from None

    def compute_etag(self) -> str | None:
        # JSON answers are `no-store`, so no client revalidates them: hashing every body was wasted work.
        # Content-addressed bytes name their own ETag (write_blob).
        return None

    def write_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

    def write_blob(self, data: bytes, digest: str, content_type: str, *, immutable: bool, shared: bool) -> None:
        """Answer with content-addressed bytes: the digest is the ETag, so a revalidation costs a 304.

        ``immutable``: the URL names these very bytes (a digest in it), so browsers keep them a year.
        ``shared``: proxies and CDNs may keep them too — only for what can never become hidden (avatars
        change URL, they are not withdrawn); job images and hub previews can be, so they stay private.
        """
        self.set_header("Content-Type", content_type)
        self.set_header("ETag", f'"{digest}"')
        self.set_header("Cache-Control", (f"{'public' if shared else 'private'}, max-age={IMMUTABLE_MAX_AGE_SECS},"
                                          " immutable") if immutable else "no-cache")
        if self.check_etag_header():
            self.set_status(304)
            self.finish()
            return
        self.finish(data)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error leaves as ``{"error": {"code", "message", "data"?}}``; no stack trace reaches a client."""
        self.announce_allowed(status_code)
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, AppError):
            # Tornado sends unknown exceptions as 500; a domain error knows its own status.
            self.set_status(exc.status)
            error = exc.to_json()
            for name, value in exc.headers.items():
                self.set_header(name, value)
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            message = exc.log_message if exc.log_message else http.HTTPStatus(status_code).phrase
            error = {"code": HTTP_ERROR_CODES.get(status_code, "http_error"), "message": message}
            if status_code == 403 and "xsrf" in message.lower():
                error = {"code": "xsrf",
                         "message": "The XSRF token is missing or wrong: send the `_xsrf` cookie's value in `X-XSRFToken`."}
        else:
            error = {"code": "internal_error", "message": "Something went wrong on our side; it has been logged."}
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps({"error": error}, ensure_ascii=False))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[no-untyped-def]
        # A client's mistake is not a server error: no traceback in the log.
        if isinstance(value, AppError):
            log.debug("%s %s -> %s: %s", self.request.method, self.request.path, value.code, value.message)
            return
        super().log_exception(typ, value, tb)


class NotFoundHandler(APIHandler):
    """Unknown API routes answer JSON, not the SPA page."""

    async def prepare(self) -> None:
        raise NotFound(f"No API route matches {self.request.path}.")
