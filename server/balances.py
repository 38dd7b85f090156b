"""Push ``balance.updated`` to a user's sockets after the ledger changed it.

The ledger reports which users a committed batch touched; pushes are
coalesced: at most one balance query per ``interval`` for all changed users
together, and one push per user per interval however many tips landed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from protocol.events import BalanceUpdated
from protocol.results import Balance
from server.hub import Hub
from storage import ledger as store
from storage.db import UNAVAILABLE_ERRORS

log = logging.getLogger("digis.balances")


def balance_payload(figures: store.Balances) -> Balance:
    return Balance(
        balance=figures.balance,
        held=figures.held,
        spendable=figures.spendable,
        earnings=figures.earnings,
        debt=figures.debt,
        frozen=figures.frozen,
    )


class BalancePusher:
    def __init__(self, pool: asyncpg.Pool, hub: Hub, interval: float = 0.1) -> None:
        self.pool = pool
        self.hub = hub
        self.interval = interval
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def changed(self, user_ids: set[int]) -> None:
        """Ledger callback: these users' balances changed (online ones get a push)."""
        online = {u for u in user_ids if self.hub.is_online(u)}
        if online:
            self._dirty |= online
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="balance-pusher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            users, self._dirty = list(self._dirty), set()
            try:
                figures = await store.balances_many(self.pool, users)
            except Exception as exc:  # the pusher must never die
                if not isinstance(exc, UNAVAILABLE_ERRORS):
                    log.error("balance push failed", exc_info=True)
                log.warning("balance push skipped: database unavailable")
                self._dirty.update(users)
                await asyncio.sleep(1)
                self._wake.set()
                continue
            for user_id, balances in figures.items():
                self.hub.send_to_user(user_id, BalanceUpdated(balance=balance_payload(balances)))
            await asyncio.sleep(self.interval)
