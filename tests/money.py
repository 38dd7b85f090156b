"""Helpers for money tests: users with accounts, funding, and the verify check."""

from __future__ import annotations

import itertools
import os

import asyncpg

from billing.ledger import Ledger
from billing.verify import verify
from storage import users

_counter = itertools.count(1)


async def make_user(pool: asyncpg.Pool, role: str = "fan") -> int:
    n = next(_counter)
    async with pool.acquire() as conn:
        user = await users.create_user(
            conn,
            email=f"m{n}_{os.getpid()}@example.com",
            username=f"m{n}_{os.getpid() % 10000}",
            password_hash="x",
            role=role,
        )
    return user.id


async def fund(ledger: Ledger, user_id: int, tokens: int) -> None:
    """Credit tokens as a paid purchase would (Stripe clearing -> wallet)."""
    await ledger.credit_purchase(
        user=user_id, tokens=tokens, key=f"test-fund:{user_id}:{next(_counter)}", reference="test"
    )


async def assert_ledger_consistent(pool: asyncpg.Pool) -> None:
    """`digis ledger verify` must be clean; run after every money test."""
    async with pool.acquire() as conn:
        report = await verify(conn)
    assert report.ok, "\n".join(report.problems)
