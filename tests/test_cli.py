"""`digis` as a user runs it: serve on the embedded default, shut down, migrate, config."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from client import AuthClient, Client
from protocol.codes import CloseCode
from tests.conftest import wait_closed
from tests.processes import clean_env, digis_command, serve


async def test_serve_embedded_default_end_to_end(tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh"
    started = time.monotonic()
    async with serve(clean_env(DIGIS_DATA_DIR=str(data_dir))) as served:
        async with aiohttp.ClientSession() as http:
            async with http.get(served.url + "/healthz") as response:
                assert response.status == 200
        assert time.monotonic() - started < 30
        async with http_ready(served.url):
            pass
        async with AuthClient(served.url) as auth:
            pair = await auth.register("new@example.com", "newcomer", "a fine password")
        async with Client.connect(served.ws_url, pair.access_token) as client:
            assert (await client.request("ping")).server_time > 0
            assert (await client.request("balance.get")).spendable == 0
        assert (data_dir / "pg" / "PG_VERSION").exists()
        assert (data_dir / "jwt_secret").exists()
        # a second server on the same port and data: refused before it touches anything
        port = served.url.rsplit(":", 1)[1]
        second = await asyncio.create_subprocess_exec(
            *digis_command(),
            "serve",
            env=clean_env(DIGIS_DATA_DIR=str(data_dir), DIGIS_PORT=port),
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            _, err = await second.communicate()
        assert second.returncode == 1 and b"cannot listen" in err
        assert b"embedded PostgreSQL" not in err  # nothing was started, nor stopped
        async with http_ready(served.url):
            pass
        async with Client.connect(served.ws_url, pair.access_token) as client:
            assert (await client.request("balance.get")).spendable == 0
        served.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            assert await served.process.wait() == 0
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "embedded PostgreSQL left running"


@asynccontextmanager
async def http_ready(url: str) -> AsyncIterator[None]:
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/readyz") as response:
            assert response.status == 200, await response.text()
    yield


async def test_sigterm_closes_clients_with_1012_and_exits_0(
    tmp_path: Path, database: str, redis_url: str
) -> None:
    env = clean_env(DIGIS_DATA_DIR=str(tmp_path), DATABASE_URL=database, REDIS_URL=redis_url)
    async with serve(env) as served:
        async with AuthClient(served.url) as auth:
            pair = await auth.register("sd@example.com", "shutdown_user", "a fine password")
        async with Client.connect(served.ws_url, pair.access_token, reconnect=False) as client:
            assert (await client.request("ping")).server_time > 0
            started = time.monotonic()
            served.process.send_signal(signal.SIGTERM)
            assert await wait_closed(client) == CloseCode.SERVICE_RESTART
        async with asyncio.timeout(10):
            assert await served.process.wait() == 0
        assert time.monotonic() - started < 10
        assert any("stopped" in line for line in served.lines)


async def run_digis(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *digis_command(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_migrate_is_safe_to_run_twice(pg_cluster, tmp_path: Path) -> None:
    import asyncpg

    admin = await asyncpg.connect(pg_cluster.dsn())
    await admin.execute("CREATE DATABASE cli_migrate")
    await admin.close()
    try:
        env = clean_env(
            DATABASE_URL=pg_cluster.dsn("cli_migrate"),
            DIGIS_DATA_DIR=str(tmp_path),
            REDIS_URL="redis://127.0.0.1:1/0",
        )
        code, _, err = await run_digis("migrate", env=env)
        assert code == 0, err
        assert "applied 0001_users" in err
        code, _, err = await run_digis("migrate", env=env)
        assert code == 0 and "up to date" in err
    finally:
        admin = await asyncpg.connect(pg_cluster.dsn())
        await admin.execute("DROP DATABASE cli_migrate WITH (FORCE)")
        await admin.close()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DIGIS_PORT", "eighty"),
        ("DIGIS_PLATFORM_FEE_PERCENT", "120"),
        ("DATABASE_URL", "mysql://nope"),
        ("DIGIS_ALLOWED_ORIGINS", "ftp://x"),
    ],
)
async def test_bad_configuration_fails_with_one_line_naming_it(
    variable: str, value: str, tmp_path: Path
) -> None:
    code, _, err = await run_digis(
        "serve", env=clean_env(**{variable: value}, DIGIS_DATA_DIR=str(tmp_path))
    )
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert variable in lines[0]


async def test_help_on_every_command() -> None:
    for args in (("--help",), ("serve", "--help"), ("migrate", "--help")):
        code, out, _ = await run_digis(*args, env=clean_env())
        assert code == 0 and "usage: digis" in out


async def test_seed_then_ledger_verify(tmp_path: Path, pg_cluster) -> None:
    import json

    import asyncpg

    admin = await asyncpg.connect(pg_cluster.dsn())
    await admin.execute("CREATE DATABASE cli_seed")
    await admin.close()
    try:
        out = tmp_path / "seed.json"
        env = clean_env(
            DATABASE_URL=pg_cluster.dsn("cli_seed"),
            DIGIS_DATA_DIR=str(tmp_path),
            DIGIS_JWT_SECRET="seed-secret-" + "s" * 40,
        )
        code, _, err = await run_digis(
            "seed", "--fans", "30", "--creators", "3", "--tokens", "250", "--out", str(out), env=env
        )
        assert code == 0, err
        document = json.loads(out.read_text())
        roles = [u["role"] for u in document["users"]]
        assert roles.count("creator") == 3 and roles.count("fan") == 30
        code, out_text, err = await run_digis("ledger", "verify", env=env)
        assert code == 0, err
        assert "30 transfers: consistent" in out_text
        conn = await asyncpg.connect(pg_cluster.dsn("cli_seed"))
        try:
            wallet = await conn.fetchval(
                "SELECT credits_posted FROM accounts WHERE user_id = $1 AND kind = 'wallet'",
                document["users"][-1]["id"],
            )
            assert wallet == 250
            # break the ledger behind its back: verify must notice and fail
            await conn.execute("ALTER TABLE accounts DISABLE TRIGGER ALL")
            await conn.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = ("
                "SELECT id FROM accounts WHERE kind = 'wallet' LIMIT 1)"
            )
        finally:
            await conn.close()
        code, out_text, _ = await run_digis("ledger", "verify", env=env)
        assert code == 1 and "problem" in out_text
    finally:
        admin = await asyncpg.connect(pg_cluster.dsn())
        await admin.execute("DROP DATABASE cli_seed WITH (FORCE)")
        await admin.close()


async def test_services_start_status_stop(tmp_path: Path) -> None:
    env = clean_env(DIGIS_DATA_DIR=str(tmp_path / "svc"))
    try:
        code, out, err = await run_digis("services", "start", "--env", env=env)
        assert code == 0 and "postgres running" in err and "redis running" in err
        assert out.startswith("DATABASE_URL=postgresql://") and "REDIS_URL=redis://" in out
        code, out, _ = await run_digis("services", "status", env=env)
        assert "postgres: running" in out and "redis: running" in out
        code, _, _ = await run_digis("services", "stop", "--redis", env=env)
        code, out, _ = await run_digis("services", "status", env=env)
        assert "postgres: running" in out and "redis: stopped" in out
    finally:
        await run_digis("services", "stop", env=env)
    code, out, _ = await run_digis("services", "status", env=env)
    assert "postgres: stopped" in out and "redis: stopped" in out
