"""Readiness follows PostgreSQL; requests fail fast (not hang) while it is down."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from client import RequestError
from server.backends import ensure_database
from server.config import Settings
from storage.embedded import EmbeddedPostgres
from storage.migrate import migrate
from tests.conftest import register_user, start_server


async def readyz(url: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/readyz") as response:
            return response.status, await response.json()


async def test_readyz_turns_false_when_postgres_stops_and_back(
    tmp_path: Path, settings: Settings, redis_url: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pg = EmbeddedPostgres(tmp_path / "own-pg", durable=False)
        await asyncio.to_thread(pg.start)
    try:
        await ensure_database(pg.dsn(), "digis")
        conn = await asyncpg.connect(pg.dsn("digis"))
        await migrate(conn)
        await conn.close()
        running = await start_server(settings, pg.dsn("digis"), redis_url)
        try:
            status, body = await readyz(running.http_url)
            assert status == 200 and body["postgres"] is True and body["redis"] is True
            user = await register_user(running)
            async with running.connect(user.access_token) as client:
                await asyncio.to_thread(pg.stop, "fast")
                status, body = await readyz(running.http_url)
                assert status == 503
                assert body["postgres"] is False and body["redis"] is True
                assert body["status"] == "unavailable"
                with pytest.raises(RequestError) as refused:
                    await client.request("balance.get", timeout=20)
                assert refused.value.code == "TEMPORARILY_UNAVAILABLE"
                assert refused.value.retry_after_ms
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        running.http_url + "/auth/login",
                        json={"email": user.email, "password": user.password},
                    ) as response,
                ):
                    assert response.status == 503
                    body = await response.json()
                    assert body["error"]["code"] == "TEMPORARILY_UNAVAILABLE"
                await asyncio.to_thread(pg.start)
                async with asyncio.timeout(20):
                    while (await readyz(running.http_url))[0] != 200:
                        await asyncio.sleep(0.2)
                assert (await client.request("balance.get")).spendable == 0
        finally:
            await running.server.close()
    finally:
        await asyncio.to_thread(pg.stop, "immediate")
