"""The server's shared services, wired once by the app factory.

Handlers and actors reach every dependency through one :class:`Services`
object instead of globals, so tests can build several independent servers
in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import redis.asyncio as aioredis

from billing.ledger import Ledger
from billing.stripe_gateway import StripeGateway
from server.agora.issuer import MediaTokens
from server.auth import AccessTokens, Passwords
from server.balances import BalancePusher
from server.config import Settings
from server.hub import Hub
from server.limits import Limits
from server.metrics import Metrics

if TYPE_CHECKING:
    from server.presence import Presence
    from server.sessions.registry import SessionRegistry

log = logging.getLogger("digis.services")


def default_node_id(port: int) -> str:
    """Stable across restarts on the same host and port, so a restarted node
    recognises (and settles) the calls its previous incarnation left open."""
    host = socket.gethostname()
    return f"{host}:{port}" if port else f"{host}:pid{os.getpid()}"


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    redis: aioredis.Redis
    metrics: Metrics
    hub: Hub
    passwords: Passwords
    tokens: AccessTokens
    limits: Limits
    node_id: str
    started_at: float = field(default_factory=time.time)
    ledger: Ledger = field(init=False)
    stripe: StripeGateway = field(init=False)
    balances: BalancePusher = field(init=False)
    media: MediaTokens = field(init=False)
    sessions: SessionRegistry = field(init=False)
    presence: Presence = field(init=False)
    clock: Callable[[], float] = time.monotonic
    shutting_down: bool = False
    background: set[asyncio.Task[Any]] = field(default_factory=set)

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task owned by the app (cancelled at cleanup)."""
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def postgres_ready(self, timeout: float = 1.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self.pool.fetchval("SELECT 1")
            return True
        except Exception:
            return False

    async def redis_ready(self, timeout: float = 1.0) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return bool(await self.redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        for task in list(self.background):
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await self.redis.aclose()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.close(), 5)
