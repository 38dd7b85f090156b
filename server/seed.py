"""``digis seed``: many users with tokens, for load tests and demos.

Creates fans and creators in bulk, grants fans tokens (ledger transfers from
Stripe clearing, kind ``grant``), and writes a JSON file with each user's id,
username, role and an access token signed with the server's key. Every
seeded user shares one password (``--password``) so they can also log in.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from server.auth import AccessTokens, Passwords
from storage import ledger, users
from storage.ledger import Op

GRANT_CHUNK = 2000


@dataclass(frozen=True, slots=True)
class SeedPlan:
    fans: int
    creators: int
    tokens: int
    video_rate: int
    voice_rate: int
    prefix: str
    password: str
    token_ttl: int


async def seed(
    conn: asyncpg.Connection,
    plan: SeedPlan,
    *,
    jwt_secret: str,
    argon2_memory_kib: int,
    progress: object = None,
) -> dict[str, object]:
    """Create the users, grant tokens, return the document written by the CLI."""
    run = plan.prefix or secrets.token_hex(3)
    password_hash = Passwords(argon2_memory_kib).hash_sync(plan.password)
    rows = [
        (f"{run}_c{i}@seed.invalid", f"{run}_c{i}", password_hash, "creator")
        for i in range(plan.creators)
    ] + [
        (f"{run}_f{i}@seed.invalid", f"{run}_f{i}", password_hash, "fan") for i in range(plan.fans)
    ]
    created = await users.create_users_bulk(
        conn, rows, video_rate=plan.video_rate, voice_rate=plan.voice_rate
    )
    system = await ledger.system_accounts(conn)
    if plan.tokens > 0:
        wallets = await conn.fetch(
            "SELECT user_id, id FROM accounts WHERE kind = 'wallet' AND user_id = ANY($1::int[])",
            [uid for uid, _, role in created if role == "fan"],
        )
        ops = [
            Op(
                "transfer",
                f"seed:{run}:{w['user_id']}",
                debit=system.stripe_clearing,
                credit=w["id"],
                amount=plan.tokens,
                kind="grant",
                reference=f"seed:{run}",
            )
            for w in wallets
        ]
        for start in range(0, len(ops), GRANT_CHUNK):
            results = await ledger.apply(conn, ops[start : start + GRANT_CHUNK])
            bad = [r.status for r in results if not r.applied]
            if bad:
                raise RuntimeError(f"granting seed tokens failed: {bad[:3]}")
    tokens = AccessTokens(jwt_secret, plan.token_ttl)
    now = time.time()
    return {
        "run": run,
        "password": plan.password,
        "expiresAt": now + plan.token_ttl,
        "users": [
            {"id": uid, "username": name, "role": role, "token": tokens.issue(uid, role, now)[0]}
            for uid, name, role in created
        ],
    }


def write(document: dict[str, object], path: Path) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n", "utf-8")
    path.chmod(0o600)
