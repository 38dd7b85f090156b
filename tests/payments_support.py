"""Fixtures for payment tests: the Stripe stand-in and a server wired for payments.

:func:`pay_env` starts a server whose Stripe settings point at the local
stand-in; its own gateway and routes serve the test.

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

from billing.ledger import Ledger
from billing.stripe_gateway import StripeGateway
from loadtest.stripe_standin import SECRET_KEY, WEBHOOK_SECRET, StripeStandin, sign
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


@pytest.fixture
async def quiet_gateway(standin: StripeStandin) -> AsyncIterator[StripeGateway]:
    """A gateway to the stand-in that never retries by itself (an unknown outcome
    stays unknown)."""
    gateway = StripeGateway(SECRET_KEY, standin.url, max_network_retries=0)
    yield gateway
    await gateway.close()


MakePayEnv = Callable[..., Awaitable[PayEnv]]


@pytest.fixture
async def make_pay_env(make_server: Any, standin: StripeStandin) -> MakePayEnv:
    """Factory: ``await make_pay_env(**setting_overrides)`` -> :class:`PayEnv`."""

    async def make(**overrides: Any) -> PayEnv:
        settings = {
            "stripe_secret_key": SECRET_KEY,
            "stripe_webhook_secret": WEBHOOK_SECRET,
            "stripe_api_base": standin.url,
            **overrides,
        }
        running: RunningServer = await make_server(**settings)
        return PayEnv(
            running=running,
            standin=standin,
            http_url=running.http_url,
            gateway=running.services.stripe,
        )

    return make


@pytest.fixture
async def pay_env(make_pay_env: MakePayEnv) -> PayEnv:
    return await make_pay_env()
