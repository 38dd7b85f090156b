"""The minimal HTTP surface: health, readiness, metrics, protocol document, auth.

Every error, whatever raised it, is answered with the same JSON envelope as
on the socket, and every response carries the security headers and an
``X-Request-Id``.
"""

from __future__ import annotations

import functools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import ClientConnectionResetError, web

from protocol.asyncapi import render as render_asyncapi
from protocol.codec import readable
from protocol.codes import ErrorCode, error_status
from protocol.events import Error, ErrorBody
from protocol.http import Health, LoginBody, RefreshBody, RegisterBody
from server import identity
from server.appkeys import SERVICES
from server.errors import ApiError
from storage.db import UNAVAILABLE_ERRORS

log = logging.getLogger("digis.http")
T = TypeVar("T")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_STATUS_CODES: dict[int, ErrorCode] = {
    400: ErrorCode.VALIDATION_ERROR,
    401: ErrorCode.AUTH_REQUIRED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.VALIDATION_ERROR,
    413: ErrorCode.FRAME_TOO_LARGE,
    429: ErrorCode.RATE_LIMIT_EXCEEDED,
}
_JSON = "application/json"
REQUEST_ID = web.RequestKey("request_id", str)


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(payload), status=status, content_type=_JSON)


def error_response(
    code: ErrorCode, message: str, request_id: str, status: int | None = None
) -> web.Response:
    envelope = Error(
        re=None, error=ErrorBody(code=code.value, message=message, request_id=request_id)
    )
    return json_response(envelope, status or error_status(code))


def request_id_of(request: web.Request) -> str:
    rid: str = request.get(REQUEST_ID, "-")
    return rid


async def decode_body(request: web.Request, kind: type[T]) -> T:
    """Decode a JSON body into ``kind``; ApiError(VALIDATION_ERROR) if it does not fit."""
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, readable(str(exc))) from None
    except msgspec.DecodeError:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "body is not valid JSON") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids, the common error envelope, and security headers."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
    request[REQUEST_ID] = rid
    try:
        response = await handler(request)
    except ApiError as exc:
        response = error_response(exc.code, exc.message, rid)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _STATUS_CODES.get(exc.status, ErrorCode.VALIDATION_ERROR)
        message = exc.reason if exc.status != 413 else "request body too large"
        response = error_response(code, message, rid, status=exc.status)
    except ClientConnectionResetError:
        raise  # the client went away (for instance mid-upgrade): nothing to answer
    except UNAVAILABLE_ERRORS:
        log.warning("backing service unavailable", extra={"req": rid}, exc_info=True)
        response = error_response(
            ErrorCode.TEMPORARILY_UNAVAILABLE, "a backing service is unavailable", rid
        )
    except Exception:
        log.exception("http request failed", extra={"req": rid, "path": request.path})
        response = error_response(ErrorCode.INTERNAL_ERROR, "internal error", rid)
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


async def healthz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return json_response(
        Health(
            status="ok",
            node=services.node_id,
            uptime_seconds=round(time.time() - services.started_at, 3),
            shutting_down=services.shutting_down,
        )
    )


async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    postgres = await services.postgres_ready()
    redis_ok = await services.redis_ready()
    ready = postgres and redis_ok and not services.shutting_down
    body = Health(
        status="ok" if ready else "unavailable",
        node=services.node_id,
        uptime_seconds=round(time.time() - services.started_at, 3),
        postgres=postgres,
        redis=redis_ok,
        shutting_down=services.shutting_down,
    )
    return json_response(body, 200 if ready else 503)


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.Response(
        body=services.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
    )


@functools.cache
def _asyncapi_document() -> bytes:
    return render_asyncapi()


async def asyncapi(request: web.Request) -> web.Response:
    return web.Response(body=_asyncapi_document(), content_type=_JSON)


async def register(request: web.Request) -> web.Response:
    body = await decode_body(request, RegisterBody)
    pair = await identity.register(request.app[SERVICES], body)
    return json_response(pair, 201)


async def login(request: web.Request) -> web.Response:
    body = await decode_body(request, LoginBody)
    return json_response(await identity.login(request.app[SERVICES], body))


async def refresh(request: web.Request) -> web.Response:
    body = await decode_body(request, RefreshBody)
    return json_response(await identity.refresh(request.app[SERVICES], body))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/asyncapi.json", asyncapi)
    app.router.add_post("/auth/register", register)
    app.router.add_post("/auth/login", login)
    app.router.add_post("/auth/refresh", refresh)
