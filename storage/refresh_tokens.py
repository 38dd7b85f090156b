"""Rotating refresh tokens, stored hashed.

A refresh token is usable once. Using it marks it used and issues its
successor in the same family; presenting an already-used (or revoked) token
means it was stolen or replayed, so the whole family is revoked.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass

from storage.db import Conn, Executor


class RotateOutcome(enum.Enum):
    ROTATED = "rotated"
    UNKNOWN = "unknown"
    EXPIRED = "expired"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class Rotation:
    outcome: RotateOutcome
    user_id: int | None = None


async def store(
    conn: Executor,
    *,
    token_hash: bytes,
    user_id: int,
    family: uuid.UUID | None,
    expires_at: dt.datetime,
) -> None:
    """Record a newly issued token (a new family when ``family`` is None)."""
    await conn.execute(
        "INSERT INTO refresh_tokens (token_hash, user_id, family, expires_at) VALUES ($1, $2, $3, $4)",
        token_hash,
        user_id,
        family or uuid.uuid4(),
        expires_at,
    )


async def rotate(
    conn: Conn,
    *,
    old_hash: bytes,
    new_hash: bytes,
    expires_at: dt.datetime,
) -> Rotation:
    """Use ``old_hash`` once and store ``new_hash`` as its successor, atomically."""
    async with conn.transaction():
        record = await conn.fetchrow(
            "SELECT user_id, family, expires_at, used_at, revoked_at FROM refresh_tokens "
            "WHERE token_hash = $1 FOR UPDATE",
            old_hash,
        )
        if record is None:
            return Rotation(RotateOutcome.UNKNOWN)
        if record["used_at"] is not None or record["revoked_at"] is not None:
            await conn.execute(
                "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE family = $1",
                record["family"],
            )
            return Rotation(RotateOutcome.REUSED, record["user_id"])
        if record["expires_at"] <= dt.datetime.now(dt.UTC):
            return Rotation(RotateOutcome.EXPIRED, record["user_id"])
        await conn.execute(
            "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", old_hash
        )
        await store(
            conn,
            token_hash=new_hash,
            user_id=record["user_id"],
            family=record["family"],
            expires_at=expires_at,
        )
        return Rotation(RotateOutcome.ROTATED, record["user_id"])


async def revoke_user(conn: Executor, user_id: int) -> None:
    """Revoke every refresh token of a user (logout everywhere, account disabled)."""
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL",
        user_id,
    )
