"""The socket's op registry: each feature registers its client ops with a schema and a handler.

A connection knows none of them. A frame `{op, ref?, ...fields}` is looked up here, its
fields are validated against the op's pydantic model (a bad one is an `error` frame that
names the field), and the op's handler gets an `OpCall`: the socket, the validated
arguments and the runtime's services. Features list their ops in their handler module
(`socket_ops`, beside the HTTP routes in `default_handlers`); the app factory joins them,
as it joins the routes. (Home Assistant's `websocket_api` `@websocket_command(schema)` is
the model.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Generic, Iterable, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from server.auth import Principal
from server.errors import InvalidInput, Unauthenticated
from server.store.models import User

ArgsT = TypeVar("ArgsT", bound=BaseModel)


class NoArgs(BaseModel):
    """An op that takes no fields (besides `op` and `ref`)."""

    model_config = ConfigDict(extra="forbid")


class Socket(Protocol):
    """What an op may do with the socket that sent it (`server.realtime.connection.Connection`)."""

    id: str
    principal: Principal | None

    def emit(self, event: dict[str, Any]) -> None:
        """Send one event to this socket alone."""

    def subscribed(self, topic: str) -> bool: ...

    async def subscribe(self, topic: str, since: int | None = None, *, by_client: bool = False) -> None:
        """Watch a topic (checked by the topic policy), replaying from `since`; emits the `ack`."""

    async def unsubscribe(self, topic: str) -> None: ...


@dataclass
class OpCall(Generic[ArgsT]):
    """One op frame being handled: who sent it, what it asks, and the services to do it with."""

    socket: Socket
    args: ArgsT
    services: Any  # the runtime (typed as `server.runtime.Runtime` where ops are written)
    ref: str | int | None

    @property
    def user(self) -> User:
        """The signed-in user (ops registered with `signed_in=True` are refused before they run otherwise)."""
        if self.socket.principal is None:
            raise Unauthenticated("Sign in to do that.")
        return self.socket.principal.user


@dataclass(frozen=True)
class Later:
    """An op's reply that comes once ``reply`` finishes. The op has done what must happen in frame order
    (e.g. queued a chat message for its commit), so the socket goes on to its next frame meanwhile instead
    of waiting for a database round trip per frame. What ``reply`` raises is the op's `error` frame."""

    reply: Awaitable[Any]
    # The reply frame made of what ``reply`` comes to (without it, that is the frame itself, or None).
    frame: Callable[[Any], dict[str, Any] | None] | None = None


OpRun = Callable[[OpCall[Any]], Awaitable[dict[str, Any] | Later | None]]


@dataclass(frozen=True)
class Op:
    name: str
    schema: type[BaseModel]
    run: OpRun
    signed_in: bool = True

    def arguments(self, fields: dict[str, Any]) -> BaseModel:
        """The frame's fields as the op's model; a bad one raises InvalidInput naming the field."""
        try:
            return self.schema.model_validate(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "frame"
            raise InvalidInput(f"`{field}`: {first['msg']}.", data={"field": field}) from None


def op(name: str, schema: type[BaseModel] = NoArgs, *, signed_in: bool = True) -> Callable[[OpRun], Op]:
    """Decorate an async handler `(call: OpCall[Schema]) -> reply | None` as the op `name`."""
    def wrap(run: OpRun) -> Op:
        return Op(name=name, schema=schema, run=run, signed_in=signed_in)
    return wrap


class OpRegistry:
    def __init__(self, ops: Iterable[Op] = ()) -> None:
        self._ops: dict[str, Op] = {}
        for entry in ops:
            self.register(entry)

    def register(self, entry: Op) -> None:
        if entry.name in self._ops:
            raise ValueError(f"the socket op {entry.name!r} is registered twice")
        self._ops[entry.name] = entry

    def get(self, name: str) -> Op | None:
        return self._ops.get(name)

    def names(self) -> list[str]:
        return sorted(self._ops)
