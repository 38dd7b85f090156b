"""Request routing: request class -> handler, with auth and role requirements.

Handlers are ``async def handler(ctx, request) -> Payload``. They raise
:class:`server.errors.ApiError` for documented failures; anything else
becomes ``INTERNAL_ERROR`` (logged with the request id, never sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from protocol.base import Payload, Request, UserRef

if TYPE_CHECKING:
    from server.connection import Connection
    from server.services import Services

R = TypeVar("R", bound=Request)
Handler = Callable[["Ctx", Any], Awaitable[Payload]]


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated user of a socket."""

    id: int
    role: str
    username: str
    display_name: str
    expires_at: float

    def ref(self) -> UserRef:
        return UserRef(
            id=self.id,
            username=self.username,
            display_name=self.display_name,
            role=self.role,  # type: ignore[arg-type]
        )


@dataclass(slots=True)
class Ctx:
    """What a handler gets besides the request."""

    conn: Connection
    services: Services
    request_id: str

    @property
    def user(self) -> Principal:
        user = self.conn.user
        assert user is not None, "route requires authentication"
        return user


@dataclass(frozen=True, slots=True)
class Route:
    request: type[Request]
    handler: Handler
    public: bool
    role: str | None


class Router:
    def __init__(self) -> None:
        self.routes: dict[type[Request], Route] = {}

    def handles(
        self, request: type[R], *, public: bool = False, role: str | None = None
    ) -> Callable[[Callable[[Ctx, R], Awaitable[Payload]]], Callable[[Ctx, R], Awaitable[Payload]]]:
        """Register the decorated function as the handler of ``request``."""

        def register(
            fn: Callable[[Ctx, R], Awaitable[Payload]],
        ) -> Callable[[Ctx, R], Awaitable[Payload]]:
            if request in self.routes:
                raise ValueError(f"{request.__name__} already has a handler")
            self.routes[request] = Route(request, fn, public, role)
            return fn

        return register

    def include(self, other: Router) -> None:
        for request, route in other.routes.items():
            if request in self.routes:
                raise ValueError(f"{request.__name__} already has a handler")
            self.routes[request] = route
