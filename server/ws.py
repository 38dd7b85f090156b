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
from server.errors import ApiError
from server.handlers import ROUTES
from server.http_api import request_id_of
from server.identity import principal_from_token
from server.router import Principal

log = logging.getLogger("digis.ws")


def _origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    if origin is None:
        return True  # not a browser: origin checks protect browsers only
    return "*" in allowed or origin.rstrip("/") in allowed


async def websocket(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    settings = services.settings
    if services.shutting_down:
        raise web.HTTPServiceUnavailable(reason="server is shutting down")
    if not _origin_allowed(request.headers.get("Origin"), settings.allowed_origins):
        raise ApiError(ErrorCode.FORBIDDEN, "origin not allowed")
    address = request.remote or "unknown"
    wait = services.limits.check_handshake(address)
    if wait > 0:
        services.metrics.rate_limited.labels("handshake").inc()
        raise ApiError(
            ErrorCode.RATE_LIMIT_EXCEEDED,
            "too many connections from this address",
            retry_after_ms=int(wait * 1000),
        )
    principal: Principal | None = None
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(ErrorCode.AUTH_REQUIRED, "Authorization must be 'Bearer <token>'")
        principal = await principal_from_token(services, token.strip())

    ws = web.WebSocketResponse(
        protocols=SUBPROTOCOLS,
        heartbeat=None,  # one server-wide sweep instead (server/heartbeat.py)
        max_msg_size=settings.max_frame_bytes,
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
    conn = Connection(services, ws, transport, codec, address, ROUTES)
    services.limits.socket_opened(address)
    log.debug(
        "socket open",
        extra={"conn": conn.id, "req": request_id_of(request), "encoding": codec.name},
    )
    try:
        await conn.serve(preauthenticated=principal)
    finally:
        services.limits.socket_closed(address)
        log.debug("socket closed", extra={"conn": conn.id, "code": ws.close_code})
    return ws
