"""One client socket: decode frames, dispatch requests, write frames.

The connection owns no business state. It authenticates, routes each
request to its handler in a task of its own (at most
``DIGIS_MAX_PENDING_REQUESTS`` at once), and writes answers and events
straight to the transport. Nothing ever waits for a slow client: a socket
whose transport buffer exceeds ``DIGIS_SEND_BUFFER_BYTES`` is closed with
4002 (slow consumer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from protocol.base import PROTOCOL_VERSION, Request, ServerMessage, type_tag
from protocol.codec import Codec, DecodeFailure
from protocol.codes import CloseCode, ErrorCode
from protocol.events import AuthExpiring, Error, ErrorBody, Hello, Result
from server.errors import ApiError
from server.frames import ws_frame
from server.outbound import Outgoing
from server.router import Ctx, Principal, Route
from storage.db import UNAVAILABLE_ERRORS

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("digis.connection")

#: How long before expiry a socket is told its access token is expiring.
EXPIRY_WARNING_SECONDS = 60.0
#: How long a close handshake may take before the transport is aborted.
CLOSE_TIMEOUT = 2.0

SessionLeaveHook = Callable[["Connection"], None]
_PONG = 0xA
_ENDS = frozenset((WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR))


class Connection:
    """A WebSocket after its upgrade; see the module docstring.

    Slotted and lazily filled: an idle authenticated socket should cost as
    little memory as possible (see the loadtest ``connect`` scenario).
    """

    __slots__ = (
        "_auth_timer",
        "_counter",
        "_expiry_warned",
        "_leave_hooks",
        "_loop",
        "_routes",
        "_send_limit",
        "_tasks",
        "bucket",
        "closed",
        "codec",
        "id",
        "last_ping",
        "last_seen",
        "pending",
        "remote",
        "services",
        "strikes",
        "transport",
        "user",
        "ws",
    )

    def __init__(
        self,
        services: Services,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        codec: Codec,
        remote: str,
        routes: dict[type[Request], Route],
    ) -> None:
        self.id = secrets.token_hex(6)
        self.services = services
        self.ws = ws
        self.transport = transport
        self.codec = codec
        self.remote = remote
        self.user: Principal | None = None
        self.closed = False
        self.pending = 0
        #: Request rate limiting (see ``server.limits``).
        self.bucket: Any = None
        self.strikes = 0
        self._loop = asyncio.get_running_loop()
        #: Loop time of the last frame received, and of the last ping sent.
        self.last_seen = self.last_ping = self._loop.time()
        #: Called once when the socket goes away (session actors register here).
        self._leave_hooks: dict[str, SessionLeaveHook] | None = None
        self._routes = routes
        self._counter = 0
        self._tasks: set[asyncio.Task[None]] | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        #: The token expiry last warned about (``auth.expiring`` goes out once per token).
        self._expiry_warned = 0.0
        self._send_limit = services.settings.send_buffer_bytes

    # --- writing ---------------------------------------------------------------

    def send_frame(self, frame: bytes) -> bool:
        """Write a complete frame; False if the socket is gone or now closing."""
        if self.closed:
            return False
        transport = self.transport
        if transport.is_closing():
            self.closed = True
            return False
        transport.write(frame)
        if transport.get_write_buffer_size() > self._send_limit:
            self.services.metrics.slow_consumers.inc()
            log.warning(
                "slow consumer closed",
                extra={"conn": self.id, "user": self.user.id if self.user else None},
            )
            self.close_soon(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def send_control(self, opcode: int, payload: bytes = b"") -> None:
        """Write a ping or pong (the server's heartbeat; answers to client pings)."""
        if not self.closed and not self.transport.is_closing():
            self.transport.write(bytes((0x80 | opcode, len(payload[:125]))) + payload[:125])

    def send_outgoing(self, out: Outgoing) -> bool:
        """Write a shared, encode-once message."""
        return self.send_frame(out.frame(self.codec))

    def send_message(self, message: ServerMessage) -> bool:
        """Encode and write a message addressed to this socket only."""
        self.services.metrics.messages_out.labels(type_tag(type(message))).inc()
        return self.send_frame(ws_frame(self.codec.encode(message), binary=self.codec.binary))

    def send_error(
        self,
        re: str | None,
        code: ErrorCode,
        message: str,
        request_id: str,
        retry_after_ms: int | None = None,
    ) -> None:
        self.services.metrics.errors.labels(code.value).inc()
        body = ErrorBody(
            code=code.value, message=message, request_id=request_id, retry_after_ms=retry_after_ms
        )
        self.send_message(Error(re=re, error=body))

    def next_request_id(self) -> str:
        self._counter += 1
        return f"{self.id}-{self._counter}"

    # --- closing ---------------------------------------------------------------

    def close_soon(self, code: CloseCode, reason: str) -> None:
        """Start closing with ``code`` without waiting; idempotent."""
        if self.closed:
            return
        self.closed = True
        self.services.metrics.closes.labels(str(int(code))).inc()
        self._track(self._loop.create_task(self._close(code, reason)))

    def _track(self, task: asyncio.Task[None]) -> None:
        if self._tasks is None:
            self._tasks = set()
        self._tasks.add(task)
        task.add_done_callback(self._untrack)

    def _untrack(self, task: asyncio.Task[None]) -> None:
        tasks = self._tasks
        if tasks is not None:
            tasks.discard(task)
            if not tasks:
                self._tasks = None  # an idle socket keeps no empty set

    def add_leave_hook(self, key: str, hook: SessionLeaveHook) -> None:
        """Call ``hook(self)`` once when this socket goes away."""
        if self._leave_hooks is None:
            self._leave_hooks = {}
        self._leave_hooks[key] = hook

    def remove_leave_hook(self, key: str) -> None:
        if self._leave_hooks is not None:
            self._leave_hooks.pop(key, None)

    async def _close(self, code: CloseCode, reason: str) -> None:
        try:
            await asyncio.wait_for(
                self.ws.close(code=int(code), message=reason.encode()), CLOSE_TIMEOUT
            )
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            # A graceful close waits for the send buffer to drain, which a slow
            # consumer never does: drop the connection instead.
            if not self.transport.is_closing() or self.transport.get_write_buffer_size():
                self.transport.abort()

    async def close(self, code: CloseCode, reason: str) -> None:
        """Close with ``code`` and wait for the close handshake (bounded)."""
        if self.closed:
            return
        self.closed = True
        self.services.metrics.closes.labels(str(int(code))).inc()
        await self._close(code, reason)

    # --- lifecycle -------------------------------------------------------------

    async def serve(self, preauthenticated: Principal | None = None) -> None:
        """Run until the socket closes. Never raises for client misbehaviour."""
        settings = self.services.settings
        self.services.hub.register(self)
        self.services.metrics.connections_open.inc()
        self.services.metrics.connections_total.inc()
        try:
            self.send_message(
                Hello(
                    protocol=PROTOCOL_VERSION,
                    encoding="msgpack" if self.codec.binary else "json",
                    auth_deadline_ms=int(settings.auth_deadline * 1000),
                    max_frame_bytes=settings.max_frame_bytes,
                    connection=self.id,
                )
            )
            if preauthenticated is not None:
                if not self.authenticate(preauthenticated):
                    await self.close(CloseCode.CONNECTION_LIMIT, "too many sockets for this user")
                    return
            else:
                self._auth_timer = self._loop.call_later(
                    settings.auth_deadline, self._auth_deadline_missed
                )
            receive = self.ws.receive
            while True:
                message = await receive()  # not ``async for``: one coroutine frame less
                self.last_seen = self._loop.time()
                kind = message.type
                if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
                    self.on_frame(message.data)
                elif kind is WSMsgType.PING:
                    self.send_control(_PONG, message.data)
                elif kind in _ENDS:
                    break
        finally:
            self._teardown()

    def _teardown(self) -> None:
        self.closed = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        hooks = list(self._leave_hooks.values()) if self._leave_hooks else []
        self._leave_hooks = None
        for hook in hooks:
            try:
                hook(self)
            except Exception:
                log.exception("session leave hook failed", extra={"conn": self.id})
        self.services.hub.unregister(self)
        self.services.metrics.connections_open.dec()

    def _auth_deadline_missed(self) -> None:
        self._auth_timer = None
        if self.user is None and not self.closed:
            self.close_soon(CloseCode.AUTH_DEADLINE, "auth deadline missed")

    def authenticate(self, principal: Principal) -> bool:
        """Bind the socket to a user; False if the user is at the socket cap."""
        hub = self.services.hub
        if hub.socket_count(principal.id) >= self.services.settings.max_sockets_per_user:
            return False
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.user = principal
        hub.attach(self, principal.id)
        self.check_expiry(time.time())
        return True

    def refresh(self, principal: Principal) -> None:
        """Replace the socket's token (same user); its expiry is checked afresh."""
        self.user = principal
        self.check_expiry(time.time())

    def check_expiry(self, wall: float) -> None:
        """Warn once when the token is about to expire; close 4001 once it has.

        Called at authentication and by the heartbeat sweep (a timer per
        socket would cost memory on every idle socket): the close comes at
        most one sweep (``DIGIS_HEARTBEAT`` / 10) after the expiry.
        """
        user = self.user
        if user is None or self.closed:
            return
        left = user.expires_at - wall
        if left <= 0:
            self.close_soon(CloseCode.TOKEN_EXPIRED, "access token expired")
        elif left <= EXPIRY_WARNING_SECONDS and self._expiry_warned != user.expires_at:
            self._expiry_warned = user.expires_at
            self.send_message(AuthExpiring(expires_at=user.expires_at, seconds_left=int(left)))

    # --- requests --------------------------------------------------------------

    def on_frame(self, data: bytes | str) -> None:
        """Decode one frame and dispatch it; answers errors itself."""
        decoded = self.codec.decode_request(data, self.services.settings.max_message_bytes)
        if isinstance(decoded, DecodeFailure):
            self.services.metrics.messages_in.labels("invalid").inc()
            self.send_error(decoded.re, decoded.code, decoded.message, self.next_request_id())
            return
        self.dispatch(decoded)

    def dispatch(self, request: Request) -> None:
        kind = type_tag(type(request))
        self.services.metrics.messages_in.labels(kind).inc()
        request_id = self.next_request_id()
        route = self._routes.get(type(request))
        if route is None:
            self.send_error(
                request.id, ErrorCode.UNKNOWN_TYPE, f"{kind!r} is not served here", request_id
            )
            return
        if self.user is None and not route.public:
            self.send_error(
                request.id, ErrorCode.AUTH_REQUIRED, "authenticate first with `auth`", request_id
            )
            return
        if route.role is not None and self.user is not None and self.user.role != route.role:
            code = ErrorCode.CREATOR_ONLY if route.role == "creator" else ErrorCode.ADMIN_ONLY
            self.send_error(request.id, code, f"`{kind}` is for {route.role}s only", request_id)
            return
        refusal = self.services.limits.check_request(self, kind)
        if refusal is not None:
            self.send_error(
                request.id,
                ErrorCode.RATE_LIMIT_EXCEEDED,
                refusal.message,
                request_id,
                retry_after_ms=refusal.retry_after_ms,
            )
            if refusal.close:
                self.close_soon(CloseCode.RATE_LIMITED, "sustained rate limit abuse")
            return
        if self.pending >= self.services.settings.max_pending_requests:
            self.send_error(
                request.id,
                ErrorCode.TOO_MANY_PENDING,
                f"at most {self.services.settings.max_pending_requests} requests in flight",
                request_id,
            )
            return
        self.pending += 1
        self._track(self._loop.create_task(self._run(route, request, request_id)))

    async def _run(self, route: Route, request: Request, request_id: str) -> None:
        ctx = Ctx(self, self.services, request_id)
        try:
            result = await route.handler(ctx, request)
        except ApiError as exc:
            self.send_error(request.id, exc.code, exc.message, request_id, exc.retry_after_ms)
            if exc.close_code is not None:
                self.close_soon(exc.close_code, exc.message)
        except UNAVAILABLE_ERRORS:
            log.warning("backing service unavailable", extra={"req": request_id}, exc_info=True)
            self.send_error(
                request.id,
                ErrorCode.TEMPORARILY_UNAVAILABLE,
                "a backing service is unavailable; nothing was changed, retry shortly",
                request_id,
                retry_after_ms=1000,
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "request failed",
                extra={"req": request_id, "conn": self.id, "type": type_tag(type(request))},
            )
            self.send_error(request.id, ErrorCode.INTERNAL_ERROR, "internal error", request_id)
        else:
            self.send_message(Result(re=request.id, result=result))
        finally:
            self.pending -= 1

    async def drain_tasks(self, timeout: float) -> None:
        """Wait (bounded) for in-flight requests, e.g. during shutdown."""
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*self._tasks, return_exceptions=True), timeout
                )
