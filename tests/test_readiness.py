"""Readiness follows PostgreSQL; requests fail fast (not hang) while it is down."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from client import RequestError
from server.config import Settings
from storage.embedded import EmbeddedPostgres
from tests.conftest import close_server, readyz, register_user, start_server


async def test_readyz_turns_false_when_postgres_stops_and_back(
    settings: Settings, redis_url: str, own_postgres: EmbeddedPostgres
) -> None:
    pg = own_postgres
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
        await close_server(running)
