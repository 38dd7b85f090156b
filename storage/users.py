"""Users, their profiles and creator settings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import asyncpg

from storage.db import Conn, Executor

_USER_COLUMNS = (
    "id, email, username, password_hash, role, display_name, bio, avatar_url, status, "
    "payment_flag, created_at"
)


class DuplicateUser(Exception):
    """Email or username already taken; ``field`` says which."""

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already registered")
        self.field = field


@dataclass(frozen=True, slots=True)
class UserRow:
    id: int
    email: str
    username: str
    password_hash: str
    role: str
    display_name: str
    bio: str
    avatar_url: str
    status: str
    payment_flag: str | None
    created_at: dt.datetime

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class CreatorSettings:
    user_id: int
    video_rate: int
    voice_rate: int
    availability: str


def _row(record: asyncpg.Record | None) -> UserRow | None:
    return None if record is None else UserRow(**dict(record.items()))


async def _insert_accounts(conn: Conn, user_ids: list[int]) -> None:
    """The ledger accounts of new users: wallet, frozen and receivable (the only
    one allowed to go into debit) for everyone, earnings and payout_pending for
    creators."""
    await conn.execute(
        """INSERT INTO accounts (user_id, kind, debits_must_not_exceed_credits)
           SELECT u.id, k.kind, k.kind <> 'receivable'
           FROM users u CROSS JOIN (VALUES ('wallet'), ('frozen'), ('receivable'),
                                           ('earnings'), ('payout_pending')) AS k(kind)
           WHERE u.id = ANY($1::int[])
             AND (u.role = 'creator' OR k.kind NOT IN ('earnings', 'payout_pending'))""",
        user_ids,
    )


async def create_user(
    conn: Conn,
    *,
    email: str,
    username: str,
    password_hash: str,
    role: str,
    display_name: str = "",
) -> UserRow:
    """Insert a user with its ledger accounts (and creator settings for creators)."""
    try:
        async with conn.transaction():
            record = await conn.fetchrow(
                f"""INSERT INTO users (email, username, password_hash, role, display_name)
                    VALUES ($1, $2, $3, $4, $5) RETURNING {_USER_COLUMNS}""",
                email,
                username,
                password_hash,
                role,
                display_name or username,
            )
            assert record is not None
            user = UserRow(**dict(record.items()))
            await _insert_accounts(conn, [user.id])
            if role == "creator":
                await conn.execute("INSERT INTO creator_settings (user_id) VALUES ($1)", user.id)
            return user
    except asyncpg.UniqueViolationError as exc:
        field = "email" if "email" in (exc.constraint_name or "") else "username"
        raise DuplicateUser(field) from exc


async def get_user(conn: Executor, user_id: int) -> UserRow | None:
    return _row(await conn.fetchrow(f"SELECT {_USER_COLUMNS} FROM users WHERE id = $1", user_id))


async def get_user_by_email(conn: Executor, email: str) -> UserRow | None:
    return _row(
        await conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE lower(email) = lower($1)", email
        )
    )


async def get_users(conn: Executor, ids: list[int]) -> list[UserRow]:
    rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY($1::int[])", ids)
    return [UserRow(**dict(r.items())) for r in rows]


async def update_profile(
    conn: Executor,
    user_id: int,
    *,
    display_name: str | None,
    bio: str | None,
    avatar_url: str | None,
) -> UserRow | None:
    """Set the given fields (``None`` leaves a field unchanged)."""
    return _row(
        await conn.fetchrow(
            f"""UPDATE users SET display_name = coalesce($2, display_name),
                                 bio = coalesce($3, bio),
                                 avatar_url = coalesce($4, avatar_url),
                                 updated_at = now()
                WHERE id = $1 RETURNING {_USER_COLUMNS}""",
            user_id,
            display_name,
            bio,
            avatar_url,
        )
    )


async def set_status(conn: Executor, user_id: int, status: str) -> None:
    await conn.execute(
        "UPDATE users SET status = $2, updated_at = now() WHERE id = $1", user_id, status
    )


async def set_payment_flag(conn: Conn, user_id: int, flag: str) -> None:
    await conn.execute(
        "UPDATE users SET payment_flag = $2, updated_at = now() WHERE id = $1", user_id, flag
    )


async def get_creator_settings(conn: Executor, user_id: int) -> CreatorSettings | None:
    record = await conn.fetchrow(
        "SELECT user_id, video_rate, voice_rate, availability FROM creator_settings "
        "WHERE user_id = $1",
        user_id,
    )
    return None if record is None else CreatorSettings(**dict(record.items()))


async def set_creator_rates(
    conn: Executor, user_id: int, video: int, voice: int
) -> CreatorSettings:
    record = await conn.fetchrow(
        """INSERT INTO creator_settings (user_id, video_rate, voice_rate) VALUES ($1, $2, $3)
           ON CONFLICT (user_id) DO UPDATE SET video_rate = $2, voice_rate = $3, updated_at = now()
           RETURNING user_id, video_rate, voice_rate, availability""",
        user_id,
        video,
        voice,
    )
    assert record is not None
    return CreatorSettings(**dict(record.items()))


async def set_availability(conn: Executor, user_id: int, availability: str) -> CreatorSettings:
    record = await conn.fetchrow(
        """INSERT INTO creator_settings (user_id, availability) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET availability = $2, updated_at = now()
           RETURNING user_id, video_rate, voice_rate, availability""",
        user_id,
        availability,
    )
    assert record is not None
    return CreatorSettings(**dict(record.items()))


async def create_users_bulk(
    conn: Conn, rows: list[tuple[str, str, str, str]], *, video_rate: int, voice_rate: int
) -> list[tuple[int, str, str]]:
    """Insert many users (email, username, password_hash, role) with their accounts.

    Returns (id, username, role) per user, in input order. One transaction,
    a few set-based statements: used by ``digis seed`` for load tests.
    """
    async with conn.transaction():
        created = await conn.fetch(
            """INSERT INTO users (email, username, password_hash, role, display_name)
               SELECT e, u, h, r, u FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
                      WITH ORDINALITY AS v(e, u, h, r, n)
               ORDER BY n
               RETURNING id, username, role""",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
        )
        ids = [r["id"] for r in created]
        await _insert_accounts(conn, ids)
        await conn.execute(
            """INSERT INTO creator_settings (user_id, video_rate, voice_rate)
               SELECT id, $2, $3 FROM users WHERE id = ANY($1::int[]) AND role = 'creator'""",
            ids,
            video_rate,
            voice_rate,
        )
    return [(r["id"], r["username"], r["role"]) for r in created]


async def availability_of(conn: Executor, user_ids: list[int]) -> dict[int, str]:
    """Creators' availability settings (online/busy/away), by user id."""
    if not user_ids:
        return {}
    rows = await conn.fetch(
        "SELECT user_id, availability FROM creator_settings WHERE user_id = ANY($1::int[])",
        user_ids,
    )
    return {r["user_id"]: r["availability"] for r in rows}
