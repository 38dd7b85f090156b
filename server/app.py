"""The app factory: resources wired once, released in reverse on cleanup.

``create_app(settings, dsn, redis_url)`` builds an aiohttp Application whose
``cleanup_ctx`` opens the pool, applies migrations, connects Redis and starts
the background machinery; its shutdown closes every socket with 1012 after
letting session actors settle and flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from aiohttp import web

from billing.ledger import Ledger
from billing.stripe_gateway import StripeGateway
from protocol.codes import CloseCode
from server import http_api
from server.agora.issuer import MediaTokens
from server.appkeys import SERVICES
from server.auth import AccessTokens, Passwords
from server.balances import BalancePusher
from server.config import Settings, jwt_secret
from server.envelope import add_fallback
from server.heartbeat import Heartbeat
from server.hub import Hub
from server.limits import Limits, Rate
from server.metrics import Metrics
from server.payments_http import add_payment_routes, start_payment_tasks
from server.presence import Presence
from server.services import Services, default_node_id
from server.sessions.registry import SessionRegistry
from server.ws import websocket
from storage.db import create_pool
from storage.migrate import migrate

log = logging.getLogger("digis.app")

#: Largest HTTP request body (webhooks included).
MAX_BODY_BYTES = 256 * 1024


def create_app(settings: Settings, *, dsn: str, redis_url: str) -> web.Application:
    # No middlewares: see ``server.envelope`` (a middleware costs every socket memory).
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def services_ctx(app: web.Application) -> AsyncIterator[None]:
        pool = await create_pool(dsn)
        try:
            async with pool.acquire() as conn:
                applied = await migrate(conn)
            if applied:
                log.info("migrations applied", extra={"migrations": applied})
        except BaseException:
            await pool.close()
            raise
        redis = aioredis.from_url(
            redis_url, socket_timeout=2, socket_connect_timeout=2, health_check_interval=10
        )
        services = Services(
            settings=settings,
            pool=pool,
            redis=redis,
            metrics=Metrics(),
            hub=Hub(),
            passwords=Passwords(settings.argon2_memory_kib),
            tokens=AccessTokens(jwt_secret(settings), settings.access_token_ttl),
            limits=Limits(
                handshake_rate=Rate(settings.handshake_rate, settings.handshake_burst),
                max_sockets_per_address=settings.max_sockets_per_address,
            ),
            node_id=settings.node_id or default_node_id(settings.port),
        )
        services.balances = BalancePusher(pool, services.hub)
        services.ledger = Ledger(
            pool,
            settings.platform_fee_bps,
            on_change=services.balances.changed,
            observer=services.metrics,
        )
        services.media = MediaTokens(
            settings.agora_app_id,
            settings.agora_app_certificate,
            version=settings.agora_token_version,
        )
        if not services.media.enabled:
            log.warning("Agora is not configured: media tokens are unavailable")
        services.stripe = StripeGateway(settings.stripe_secret_key, settings.stripe_api_base)
        await services.ledger.start()
        services.balances.start()
        start_payment_tasks(services)
        services.presence = Presence(redis, services.hub, services.node_id)
        services.presence.start()
        services.sessions = SessionRegistry(services)
        settled = await services.sessions.settle_now(at_start=True)
        if settled:
            log.warning("settled calls left open by a previous run", extra={"calls": settled})
        services.sessions.start()
        services.spawn(_release_expired_holds(services), "hold-expiry")
        services.spawn(
            Heartbeat(services.hub, settings.heartbeat, services.metrics).run(), "heartbeat"
        )
        app[SERVICES] = services
        try:
            yield
        finally:
            await services.presence.stop()
            await services.balances.stop()
            await services.ledger.stop(timeout=settings.shutdown_timeout / 2)
            await services.close()
            await services.stripe.close()

    app.cleanup_ctx.append(services_ctx)
    app.on_shutdown.append(_shutdown)
    http_api.add_routes(app)
    add_payment_routes(app)
    app.router.add_get("/ws", websocket)
    add_fallback(app)
    return app


async def _release_expired_holds(services: Services, every: float = 30.0) -> None:
    """Void holds whose timeout passed (a crashed node's forgotten reservations)."""
    while True:
        await asyncio.sleep(every)
        try:
            await services.ledger.release_expired_holds()
        except Exception:
            log.warning("hold expiry run failed", exc_info=True)


async def _shutdown(app: web.Application) -> None:
    """Stop accepting work, let sessions settle, close sockets with 1012."""
    services = app.get(SERVICES)
    if services is None:
        return
    services.shutting_down = True
    timeout = services.settings.shutdown_timeout
    await services.sessions.shutdown(timeout / 2)
    connections = services.hub.all_connections()
    log.info("shutting down", extra={"sockets": len(connections)})
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(
                *(c.close(CloseCode.SERVICE_RESTART, "server restarting") for c in connections),
                return_exceptions=True,
            ),
            timeout / 2,
        )
