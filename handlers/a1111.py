"""The AUTOMATIC1111-compatible API under /sdapi/v1/ (the service is server/a1111.py).

Auth as A1111's `--api-auth`: HTTP Basic with a username and one of that user's API tokens as
the password; our bearer tokens and browser sessions work too. Errors have A1111's shapes on
this prefix only: validation errors are 422 `{"detail": [{loc, msg, type}]}` (FastAPI's),
others `{"error", "detail"}`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tornado import web

from handlers.base import SESSION_COOKIE, APIHandler
from inference.requests import MAX_CONTROL_UNITS
from server.a1111 import (A1111Service, Img2ImgRequest, OptionsUpdate, PngInfoRequest, SdapiInvalid,
                          Txt2ImgRequest)
from server.auth import Principal
from server.errors import AppError, InvalidInput, NotFound, Unauthenticated

MiB = 1024 * 1024
BASIC_PREFIX = "basic "
REALM = 'Basic realm="sdapi"'
ModelT = TypeVar("ModelT", bound=BaseModel)


class SdapiHandler(APIHandler):
    """Basic auth, JSON bodies only, and A1111's error shapes."""

    @property
    def a1111(self) -> A1111Service:
        return self.runtime.a1111

    def _basic(self) -> tuple[str, str] | None:
        header = self.request.headers.get("Authorization", "")
        if not header.lower().startswith(BASIC_PREFIX):
            return None
        try:
            username, _, password = base64.b64decode(header[len(BASIC_PREFIX):].strip(), validate=True) \
                .decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("Incorrect username or password", code="invalid_credentials") from None
        return username, password

    async def resolve_principal(self) -> Principal | None:
        basic = self._basic()
        if basic is None:
            return await super().resolve_principal()
        username, token = basic
        principal = await self.auth.principal_for_token(token) if token else None
        if principal is None or principal.user.username != username.strip().lower():
            raise Unauthenticated("Incorrect username or password", code="invalid_credentials")
        return principal

    def check_xsrf_cookie(self) -> None:
        # Only a browser session can ride on a forged request: with Basic credentials (a state change here also
        # needs `Content-Type: application/json`, which a cross-site form cannot send) or none at all (then the
        # answer is A1111's 401 with its Basic challenge, not an XSRF refusal) there is nothing to protect.
        if self._basic() is None and self.get_cookie(SESSION_COOKIE) is not None:
            super().check_xsrf_cookie()

    def require_caller(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("Not authenticated")
        return self.principal

    def sdapi_parse(self, model: type[ModelT]) -> ModelT:
        """The JSON body as an A1111 request model; errors as FastAPI's 422 `detail`."""
        self.require_media_type({"application/json"})
        try:
            value = json.loads(self.body or b"null")
        except ValueError as exc:
            raise SdapiInvalid("JSON decode error", loc=[0], kind="json_invalid") from exc
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            errors = [{"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]}
                      for error in exc.errors()]
            raise SdapiInvalid(errors[0]["msg"], errors=errors) from None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        body: dict[str, Any]
        if isinstance(exc, SdapiInvalid):
            status_code, body = 422, {"detail": exc.detail}
        elif isinstance(exc, InvalidInput):
            status_code = 422
            loc = ["body", exc.data["field"]] if exc.data.get("field") else ["body"]
            body = {"detail": [{"loc": loc, "msg": exc.message, "type": exc.code}]}
        elif isinstance(exc, AppError):
            status_code, body = exc.status, {"error": exc.code, "detail": exc.message}
            for name, value in exc.headers.items():
                self.set_header(name, value)
            if isinstance(exc, Unauthenticated):
                self.set_header("WWW-Authenticate", REALM)
        elif isinstance(exc, web.HTTPError) and status_code < 500:
            body = {"error": "http_error", "detail": exc.log_message or http.HTTPStatus(status_code).phrase}
        else:
            status_code, body = 500, {"error": "internal_error",
                                      "detail": "Something went wrong on our side; it has been logged."}
        self.set_status(status_code)
        self.announce_allowed(status_code)
        self.clear_header("Content-Type")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body, ensure_ascii=False))


class GenerateHandler(SdapiHandler):
    """txt2img and img2img: the call waits for its job; a caller that disconnects cancels it."""

    request_model: type[Txt2ImgRequest] = Txt2ImgRequest

    def initialize(self, request_model: type[Txt2ImgRequest] = Txt2ImgRequest) -> None:
        super().initialize()
        self.request_model = request_model
        self._gone = asyncio.Event()

    @property
    def body_limit(self) -> int:
        # An init image and as many ControlNet images, each a third larger as base64, plus the fields.
        return self.runtime.settings.max_init_image_bytes * 4 // 3 * (1 + MAX_CONTROL_UNITS) + MiB

    def on_connection_close(self) -> None:
        self._gone.set()

    async def post(self) -> None:
        """Queue the job, wait for it, answer the images as base64 PNGs with `parameters` and `info`."""
        principal = self.require_caller()
        request = self.sdapi_parse(self.request_model)
        submitted = await self.a1111.submit(principal.user, request)
        try:
            job = await self.a1111.wait(submitted.job_id, self._gone)
        except asyncio.CancelledError:
            await self.a1111.cancel(principal.user, submitted.job_id)
            if self._gone.is_set():
                return  # nobody to answer
            raise
        self.write_json(await self.a1111.answer(principal, submitted, job, request.send_images))


class ProgressHandler(SdapiHandler):
    async def get(self) -> None:
        """ProgressResponse of the caller's current job."""
        user = self.require_caller().user
        skip = self.get_query_argument("skip_current_image", "false").lower() == "true"
        self.write_json(await self.a1111.progress(user, skip_current_image=skip))


class InterruptHandler(SdapiHandler):
    async def post(self) -> None:
        """Stop the caller's running job (A1111's `skip` does the same here: one job per call)."""
        user = self.require_caller().user
        await self.a1111.interrupt(user)
        self.write_json({})


class SdModelsHandler(SdapiHandler):
    async def get(self) -> None:
        """SDModelItem list."""
        self.require_caller()
        self.write_json(await self.a1111.sd_models())


class SdVaeHandler(SdapiHandler):
    async def get(self) -> None:
        """SDVaeItem list: none apart (each checkpoint brings its VAE)."""
        self.require_caller()
        self.write_json([])


class SamplersHandler(SdapiHandler):
    async def get(self) -> None:
        """SamplerItem list."""
        self.require_caller()
        self.write_json(self.a1111.samplers())


class SchedulersHandler(SdapiHandler):
    async def get(self) -> None:
        """SchedulerItem list."""
        self.require_caller()
        self.write_json(self.a1111.schedulers())


class LorasHandler(SdapiHandler):
    async def get(self) -> None:
        """The LoRAs in the models folder."""
        self.require_caller()
        self.write_json(await self.a1111.loras())


class OptionsHandler(SdapiHandler):
    async def get(self) -> None:
        """The options A1111 clients read; `sd_model_checkpoint` is the caller's default."""
        self.write_json(await self.a1111.options(self.require_caller().user))

    async def post(self) -> None:
        """Set the caller's default `sd_model_checkpoint`; other options are accepted and ignored."""
        user = self.require_caller().user
        await self.a1111.set_options(user, self.sdapi_parse(OptionsUpdate))
        self.write_json(None)


class PngInfoHandler(SdapiHandler):
    @property
    def body_limit(self) -> int:
        return self.runtime.settings.max_init_image_bytes * 4 // 3 + MiB

    async def post(self) -> None:
        """PNGInfoResponse of a base64 image."""
        self.require_caller()
        self.write_json(await self.a1111.png_info(self.sdapi_parse(PngInfoRequest)))


class CmdFlagsHandler(SdapiHandler):
    async def get(self) -> None:
        self.require_caller()
        self.write_json(self.a1111.cmd_flags())


class MemoryHandler(SdapiHandler):
    async def get(self) -> None:
        self.require_caller()
        self.write_json(self.a1111.memory())


class SdapiNotFoundHandler(SdapiHandler):
    async def prepare(self) -> None:
        raise NotFound("Not Found")


default_handlers = [
    (r"/sdapi/v1/txt2img", GenerateHandler, {"request_model": Txt2ImgRequest}),
    (r"/sdapi/v1/img2img", GenerateHandler, {"request_model": Img2ImgRequest}),
    (r"/sdapi/v1/progress", ProgressHandler),
    (r"/sdapi/v1/interrupt", InterruptHandler),
    (r"/sdapi/v1/skip", InterruptHandler),
    (r"/sdapi/v1/sd-models", SdModelsHandler),
    (r"/sdapi/v1/sd-vae", SdVaeHandler),
    (r"/sdapi/v1/samplers", SamplersHandler),
    (r"/sdapi/v1/schedulers", SchedulersHandler),
    (r"/sdapi/v1/loras", LorasHandler),
    (r"/sdapi/v1/options", OptionsHandler),
    (r"/sdapi/v1/png-info", PngInfoHandler),
    (r"/sdapi/v1/cmd-flags", CmdFlagsHandler),
    (r"/sdapi/v1/memory", MemoryHandler),
    (r"/sdapi/.*", SdapiNotFoundHandler),
]
