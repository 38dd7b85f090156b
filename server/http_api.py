"""The minimal HTTP surface: health, readiness, metrics, protocol document, auth.

Every route is wrapped by :func:`server.envelope.enveloped`: errors get the
socket's JSON envelope, responses the security headers and ``X-Request-Id``.
"""

from __future__ import annotations

import functools
import time
from typing import TypeVar

import msgspec
from aiohttp import web

from protocol.asyncapi import render as render_asyncapi
from protocol.codec import readable
from protocol.codes import ErrorCode
from protocol.http import Health, LoginBody, RefreshBody, RegisterBody
from server import identity
from server.appkeys import SERVICES
from server.envelope import enveloped, json_response
from server.errors import ApiError

T = TypeVar("T")


async def decode_body(request: web.Request, kind: type[T]) -> T:
    """Decode a JSON body into ``kind``; ApiError(VALIDATION_ERROR) if it does not fit."""
    raw = await request.read()
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, readable(str(exc))) from None
    except msgspec.DecodeError:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "body is not valid JSON") from None


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
    return web.Response(body=_asyncapi_document(), content_type="application/json")


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
    app.router.add_get("/healthz", enveloped(healthz))
    app.router.add_get("/readyz", enveloped(readyz))
    app.router.add_get("/metrics", enveloped(metrics))
    app.router.add_get("/asyncapi.json", enveloped(asyncapi))
    app.router.add_post("/auth/register", enveloped(register))
    app.router.add_post("/auth/login", enveloped(login))
    app.router.add_post("/auth/refresh", enveloped(refresh))
