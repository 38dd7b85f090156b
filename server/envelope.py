"""The HTTP error envelope, request ids and security headers, per route.

Every HTTP error, whatever raised it, is answered with the same JSON
envelope as on the socket, and every response carries the security headers
and an ``X-Request-Id``. This is a wrapper put around each HTTP handler
(:func:`enveloped`) plus a catch-all route for unknown paths and methods,
not an aiohttp middleware: a middleware stays on the stack of every
WebSocket for its whole life, about 900 bytes per idle socket (see the
loadtest ``connect`` scenario). ``GET /ws`` uses :func:`refusal` for the
checks it makes before upgrading.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import ClientConnectionResetError, web

from protocol.codes import ErrorCode, error_status
from protocol.events import Error, ErrorBody
from server.errors import ApiError
from storage.db import UNAVAILABLE_ERRORS

log = logging.getLogger("digis.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The catch-all route answering unknown paths (404) and methods (405).
FALLBACK_PATH = "/{tail:.*}"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.VALIDATION_ERROR,
    413: ErrorCode.FRAME_TOO_LARGE,
    429: ErrorCode.RATE_LIMIT_EXCEEDED,
    503: ErrorCode.TEMPORARILY_UNAVAILABLE,
}
_JSON = "application/json"


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type=_JSON)


def error_response(
    code: ErrorCode, message: str, request_id: str, status: int | None = None
) -> web.Response:
    envelope = Error(
        re=None, error=ErrorBody(code=code.value, message=message, request_id=request_id)
    )
    return json_response(envelope, status or error_status(code))


def request_id_for(request: web.Request) -> str:
    """The client's ``X-Request-Id`` when well formed, else a fresh one."""
    incoming = request.headers.get("X-Request-Id", "")
    return incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)


def response_for(exc: Exception, request: web.Request, rid: str) -> web.Response:
    """The envelope answering ``exc``; re-raises what must not be answered."""
    if isinstance(exc, ApiError):
        return error_response(exc.code, exc.message, rid)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            raise exc  # redirects and the like are answers already
        code = _STATUS_CODES.get(exc.status, ErrorCode.VALIDATION_ERROR)
        message = exc.reason if exc.status != 413 else "request body too large"
        response = error_response(code, message, rid, status=exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if isinstance(exc, ClientConnectionResetError):
        raise exc  # the client went away (for instance mid-upgrade): nothing to answer
    if isinstance(exc, UNAVAILABLE_ERRORS):
        log.warning("backing service unavailable", extra={"req": rid}, exc_info=exc)
        return error_response(
            ErrorCode.TEMPORARILY_UNAVAILABLE, "a backing service is unavailable", rid
        )
    log.error("http request failed", extra={"req": rid, "path": request.path}, exc_info=exc)
    return error_response(ErrorCode.INTERNAL_ERROR, "internal error", rid)


def secured(response: web.StreamResponse, request: web.Request, rid: str) -> web.StreamResponse:
    """Add the request id and the security headers (unless already sent)."""
    if not response.prepared:
        headers = response.headers
        headers["X-Request-Id"] = rid
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        headers.setdefault("Cache-Control", "no-store")
        if request.secure or request.headers.get("X-Forwarded-Proto") == "https":
            headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    return response


def enveloped(handler: Handler) -> Handler:
    """``handler`` with request ids, the error envelope and the security headers."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        rid = request_id_for(request)
        try:
            response = await handler(request)
        except Exception as exc:
            response = response_for(exc, request, rid)
        return secured(response, request, rid)

    return wrapped


def refusal(exc: Exception, request: web.Request) -> web.StreamResponse:
    """The enveloped answer to a request refused before its handler got going."""
    rid = request_id_for(request)
    return secured(response_for(exc, request, rid), request, rid)


async def _no_route(request: web.Request) -> web.StreamResponse:
    allowed: set[str] = set()
    fallback = request.match_info.route.resource
    for resource in request.app.router.resources():
        if resource is not fallback:
            _, methods = await resource.resolve(request)
            allowed |= methods
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, allowed)
    raise web.HTTPNotFound()


def add_fallback(app: web.Application) -> None:
    """Register last: unknown paths and methods get the envelope too."""
    app.router.add_route("*", FALLBACK_PATH, enveloped(_no_route))
