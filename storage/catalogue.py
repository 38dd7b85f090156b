"""What is on sale: token packages and the gift catalogue (seeded by migrations)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Executor


@dataclass(frozen=True, slots=True)
class Package:
    id: str
    tokens: int
    price_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class GiftItem:
    id: str
    name: str
    tokens: int


async def packages(conn: Executor) -> list[Package]:
    rows = await conn.fetch(
        "SELECT id, tokens, price_cents, currency FROM token_packages WHERE active ORDER BY sort, id"
    )
    return [Package(**dict(r.items())) for r in rows]


async def package(conn: Executor, package_id: str) -> Package | None:
    row = await conn.fetchrow(
        "SELECT id, tokens, price_cents, currency FROM token_packages WHERE id = $1 AND active",
        package_id,
    )
    return None if row is None else Package(**dict(row.items()))


async def gifts(conn: Executor) -> list[GiftItem]:
    rows = await conn.fetch("SELECT id, name, tokens FROM gifts ORDER BY sort, id")
    return [GiftItem(**dict(r.items())) for r in rows]
