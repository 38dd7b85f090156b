"""kill -9 during a call: the restarted node settles it from the last checkpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from client import Client
from protocol import events as ev
from server.auth import AccessTokens
from storage import users
from storage.ledger import Op, apply, balances, system_accounts, user_accounts
from tests.conftest import ring
from tests.money import assert_ledger_consistent
from tests.processes import clean_env, serve

SECRET = "crash-test-secret-" + "z" * 40


async def make_user(conn: asyncpg.Connection, name: str, role: str, tokens: int = 0) -> int:
    user = await users.create_user(
        conn, email=f"{name}@example.com", username=name, password_hash="x", role=role
    )
    if tokens:
        system = await system_accounts(conn)
        accounts = await user_accounts(conn, user.id)
        assert accounts is not None
        (result,) = await apply(
            conn,
            [
                Op(
                    "transfer",
                    f"grant:{user.id}",
                    debit=system.stripe_clearing,
                    credit=accounts.wallet,
                    amount=tokens,
                    kind="purchase",
                )
            ],
        )
        assert result.status == "ok"
    return user.id


async def test_kill_9_mid_call_then_restart_settles_from_the_checkpoint(
    tmp_path: Path, database: str, redis_url: str
) -> None:
    conn = await asyncpg.connect(database)
    try:
        fan = await make_user(conn, "crash_fan", "fan", tokens=1000)
        creator = await make_user(conn, "crash_creator", "creator")
    finally:
        await conn.close()
    tokens = AccessTokens(SECRET, 900)
    env = clean_env(
        DIGIS_DATA_DIR=str(tmp_path),
        DATABASE_URL=database,
        REDIS_URL=redis_url,
        DIGIS_JWT_SECRET=SECRET,
        DIGIS_NODE_ID="crash-node",
        DIGIS_FLUSH_INTERVAL="0.2",
    )
    async with serve(env) as first:
        c = Client(first.ws_url, tokens.issue(creator, "creator")[0], reconnect=False)
        f = Client(first.ws_url, tokens.issue(fan, "fan")[0], reconnect=False)
        await c.open()
        await f.open()
        joined = await c.request("call.accept", invite=await ring(f, c, creator))
        tick = await f.next_event(ev.CallTick, timeout=10)
        assert isinstance(tick, ev.CallTick) and tick.charged >= 4
        first.process.kill()
        await first.process.wait()
        await c.close()
        await f.close()
    conn = await asyncpg.connect(database)
    try:
        before = await conn.fetchrow(
            "SELECT status, tokens_charged, billed_seconds FROM sessions WHERE id = $1",
            joined.session,
        )
        assert before["status"] == "active"
        checkpoint = before["tokens_charged"]
        # at 1 token/s the checkpoint lags the truth by at most one 0.2 s flush interval
        assert tick.charged - 1 <= checkpoint
        assert await conn.fetchval("SELECT count(*) FROM open_holds") >= 1
    finally:
        await conn.close()

    async with serve(env):
        conn = await asyncpg.connect(database)
        try:
            async with asyncio.timeout(20):
                while True:
                    row = await conn.fetchrow(
                        "SELECT status, tokens_charged, end_reason FROM sessions WHERE id = $1",
                        joined.session,
                    )
                    if row["status"] == "ended":
                        break
                    await asyncio.sleep(0.1)
            assert row["tokens_charged"] == checkpoint  # never beyond the last flush
            assert row["end_reason"] == "server_error"
            assert await conn.fetchval("SELECT count(*) FROM open_holds") == 0
            assert (await balances(conn, fan)).spendable == 1000 - checkpoint
        finally:
            await conn.close()
    pool = await asyncpg.create_pool(database, min_size=1, max_size=2)
    try:
        await assert_ledger_consistent(pool)
    finally:
        await pool.close()
