"""Fixtures for payment tests: the Stripe stand-in and a server wired for payments.

Until ``server/app.py`` creates ``services.stripe`` and registers the
payment routes itself, :func:`pay_env` completes the wiring for the test:
it installs a :class:`StripeGateway` on the running server's services, adds
the payment socket handlers to the shared route table (undone after the
test), and serves ``add_payment_routes`` on a second local aiohttp app that
shares the running server's ``Services``. Once the app factory does all of
this, the fixture uses the real server's own routes and gateway instead.

Test modules load this file with ``pytest_plugins`` and import its types only
under ``TYPE_CHECKING`` (so pytest can still rewrite its asserts).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from billing.ledger import Ledger
from billing.stripe_gateway import StripeGateway
from loadtest.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandin, sign
from server.appkeys import SERVICES
from server.handlers import ROUTES
from server.handlers.payments import router as payments_router
from server.payments_http import add_payment_routes, gateway_of
from tests.conftest import RunningServer


@dataclass
class PayEnv:
    running: RunningServer
    standin: StripeStandin
    http_url: str
    gateway: StripeGateway

    @property
    def ledger(self) -> Ledger:
        return self.running.services.ledger

    @property
    def pool(self) -> asyncpg.Pool:
        return self.running.services.pool

    async def post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.http_url + path, data=body, headers=headers or {}) as response,
        ):
            return response.status, await response.json(content_type=None)

    async def webhook(
        self,
        event: dict[str, Any] | bytes,
        *,
        secret: str = WEBHOOK_SECRET,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> tuple[int, Any]:
        """Deliver ``event`` signed as Stripe would (or with ``signature`` as given)."""
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        header = sign(payload, secret, timestamp) if signature is None else signature
        headers = {"Content-Type": "application/json"}
        if header:
            headers["Stripe-Signature"] = header
        return await self.post("/webhooks/stripe", payload, headers)

    async def intent(self, token: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return await self.post("/payments/intent", json.dumps(body).encode(), headers)


@pytest.fixture
async def standin() -> AsyncIterator[StripeStandin]:
    fake = StripeStandin()
    await fake.start()
    yield fake
    await fake.close()


MakePayEnv = Callable[..., Awaitable[PayEnv]]


@pytest.fixture
async def make_pay_env(
    make_server: Any, standin: StripeStandin, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[MakePayEnv]:
    """Factory: ``await make_pay_env(**setting_overrides)`` -> :class:`PayEnv`."""
    for request, route in payments_router.routes.items():
        if request not in ROUTES:
            monkeypatch.setitem(ROUTES, request, route)
    extra_servers: list[TestServer] = []
    own_gateways: list[StripeGateway] = []

    async def make(**overrides: Any) -> PayEnv:
        settings = {
            "stripe_secret_key": SECRET_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": standin.url,
            **overrides,
        }
        running: RunningServer = await make_server(**settings)
        services = running.services
        gateway = gateway_of(services)
        if gateway is None:
            gateway = StripeGateway(
                settings["stripe_secret_key"], settings["stripe_api_base"], max_network_retries=0
            )
            services.stripe = gateway  # type: ignore[attr-defined]
            own_gateways.append(gateway)
        app = running.server.app
        assert app is not None
        if any(r.canonical == "/webhooks/stripe" for r in app.router.resources()):
            url = running.http_url
        else:
            local = web.Application()
            local[SERVICES] = services
            add_payment_routes(local)
            server = TestServer(local, host="127.0.0.1")
            await server.start_server()
            extra_servers.append(server)
            url = str(server.make_url("")).rstrip("/")
        return PayEnv(running=running, standin=standin, http_url=url, gateway=gateway)

    yield make
    for server in extra_servers:
        await server.close()
    for gateway in own_gateways:
        await gateway.close()


@pytest.fixture
async def pay_env(make_pay_env: MakePayEnv) -> PayEnv:
    return await make_pay_env()
