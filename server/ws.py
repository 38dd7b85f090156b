"""``GET /ws``: the WebSocket upgrade, before a :class:`Connection` takes over.

Checks done before upgrading answer with an HTTP error envelope: the
``Origin`` of browser clients, the handshake rate per address, and an
``Authorization: Bearer`` token when one is given. A client that offers only
subprotocols we do not speak is upgraded and closed with 4501.
"""

from __future__ import annotations

import logging

from aiohttp import web

from protocol.base import SUBPROTOCOLS
from protocol.codec import codec_for_subprotocol
from protocol.codes import CloseCode, ErrorCode
from server.appkeys import SERVICES
from server.connection import Connection
from server.envelope import refusal
from server.errors import ApiError
from server.handlers import ROUTES
from server.identity import principal_from_authorization
from server.router import Principal
from server.services import Services

log = logging.getLogger("digis.ws")


def _origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    if origin is None:
        return True  # not a browser: origin checks protect browsers only
    return "*" in allowed or origin.rstrip("/") in allowed


async def _admit(request: web.Request, services: Services) -> Principal | None:
    """The checks made before upgrading; raises ApiError. The Bearer principal, if any."""
    settings = services.settings
    if services.shutting_down:
        raise web.HTTPServiceUnavailable(reason="server is shutting down")
    if not _origin_allowed(request.headers.get("Origin"), settings.allowed_origins):
        raise ApiError(ErrorCode.FORBIDDEN, "origin not allowed")
    wait = services.limits.check_handshake(request.remote or "unknown")
    if wait > 0:
        services.metrics.rate_limited.labels("handshake").inc()
        raise ApiError(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            "too many connections from this address",
            retry_after_ms=int(wait * 1000),
        )
    header = request.headers.get("Authorization", "")
    return await principal_from_authorization(services, header) if header else None


async def _upgrade(request: web.Request, services: Services) -> Connection | web.WebSocketResponse:
    """Upgrade; the Connection to serve, or a response already closed (no subprotocol)."""
    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        heartbeat=None,  # one server-wide sweep instead (server/heartbeat.py)
        max_msg_size=services.settings.max_frame_bytes,
        compress=False,
        autoping=False,  # the connection answers pings and sees pongs itself
    )
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    codec = codec_for_subprotocol(ws.ws_protocol)
    offered = request.headers.get("Sec-WebSocket-Protocol")
    if codec is None or (offered and ws.ws_protocol is None):
        services.metrics.closes.labels(str(int(CloseCode.UNSUPPORTED_PROTOCOL))).inc()
        await ws.close(
            code=int(CloseCode.UNSUPPORTED_PROTOCOL),
            message=b"supported subprotocols: " + ", ".join(SUBPROTOCOLS).encode(),
        )
        return ws
    return Connection(services, ws, transport, codec, request.remote or "unknown", ROUTES)


async def websocket(request: web.Request) -> web.StreamResponse:
    """``GET /ws``. This frame lives as long as the socket: it keeps few locals."""
    services = request.app[SERVICES]
    try:
        principal = await _admit(request, services)
        conn = await _upgrade(request, services)
    except Exception as exc:
        return refusal(exc, request)
    if not isinstance(conn, Connection):
        return conn
    address = conn.remote
    services.limits.socket_opened(address)
    log.debug("socket open", extra={"conn": conn.id, "encoding": conn.codec.name})
    try:
        await conn.serve(preauthenticated=principal)
    finally:
        services.limits.socket_closed(address)
        log.debug("socket closed", extra={"conn": conn.id, "code": conn.ws.close_code})
    return conn.ws
