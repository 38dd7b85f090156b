"""PostgreSQL and Redis outages: keep serving, fail fast, recover, lose nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from client import RequestError
from protocol import events as ev
from server.config import Settings
from storage import ledger as ledger_store
from storage import sessions
from storage.embedded import EmbeddedPostgres, EmbeddedRedis
from tests.conftest import (
    RunningServer,
    close_server,
    quick_user,
    readyz,
    ring,
    start_server,
)
from tests.money import assert_ledger_consistent


async def until(predicate, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)


async def test_postgres_outage_during_a_call(
    own_postgres: EmbeddedPostgres, settings: Settings, redis_url: str
) -> None:
    pg = own_postgres
    running = await start_server(
        settings.with_overrides(flush_interval=0.2), pg.dsn("digis"), redis_url
    )
    try:
        fan = await quick_user(running, tokens=1000)
        creator = await quick_user(running, "creator")
        async with (
            running.connect(creator.access_token) as c,
            running.connect(fan.access_token) as f,
        ):
            joined = await c.request("call.accept", invite=await ring(f, c, creator.id))
            await f.next_event(ev.CallTick, timeout=8)
            await asyncio.to_thread(pg.stop, "fast")
            assert (await readyz(running.http_url))[1]["postgres"] is False
            # metering goes on inside the hold while PostgreSQL is away
            during = await f.next_event(ev.CallTick, timeout=8)
            assert isinstance(during, ev.CallTick) and during.billing == "running"
            with pytest.raises(RequestError) as refused:
                await f.request(
                    "tip.send", session=joined.session, amount=5, key="tip-during-outage"
                )
            assert refused.value.code == "TEMPORARILY_UNAVAILABLE"
            await asyncio.to_thread(pg.start)
            await until(lambda: _ready_postgres(running))
            # the tip can be retried with the same key: exactly once
            tip = await f.request(
                "tip.send", session=joined.session, amount=5, key="tip-during-outage"
            )
            again = await f.request(
                "tip.send", session=joined.session, amount=5, key="tip-during-outage"
            )
            assert tip.transfer == again.transfer
            totals = await f.request("call.end", session=joined.session)
        row = await sessions.get_call(running.services.pool, joined.session)
        assert row is not None and row.status == "ended"
        assert row.tokens_charged == totals.tokens_charged >= during.charged
        wallet = (await ledger_store.balances(running.services.pool, fan.id)).spendable
        assert wallet == 1000 - totals.tokens_charged - 5
        await assert_ledger_consistent(running.services.pool)
    finally:
        await close_server(running)


async def _ready_postgres(running: RunningServer) -> bool:
    return bool((await readyz(running.http_url))[1]["postgres"])


async def test_redis_restart_degrades_presence_then_recovers(
    tmp_path: Path, settings: Settings, database: str
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis-outage", persist=False)
    url = await asyncio.to_thread(redis.start)
    one = await start_server(settings.with_overrides(node_id="node-one"), database, url)
    two = await start_server(settings.with_overrides(node_id="node-two"), database, url)
    try:
        creator = await quick_user(one, "creator")
        fan = await quick_user(one)
        async with one.connect(creator.access_token), two.connect(fan.access_token) as f:

            async def creator_online() -> bool:
                answer = await f.request("presence.get", users=[creator.id])
                return bool(answer.users[0].online)

            await until(creator_online)  # seen from the other node, through Redis
            await asyncio.to_thread(redis.stop)
            await until(lambda: _not(creator_online))  # degraded: this node only
            assert (await readyz(two.http_url))[1]["redis"] is False
            assert (await f.request("balance.get")).spendable == 0  # still serving
            await asyncio.to_thread(redis.start)
            await until(creator_online)
            assert (await readyz(two.http_url))[1]["redis"] is True
    finally:
        await close_server(one)
        await close_server(two)
        await asyncio.to_thread(redis.stop)


async def _not(predicate) -> bool:
    return not await predicate()
