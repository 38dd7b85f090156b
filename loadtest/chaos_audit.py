"""What must hold after a chaos run, checked against PostgreSQL.

1. ``digis ledger verify`` is clean: total debits = total credits, every
   balance equals its transfers, no account overdrawn, ``open_holds`` agrees,
   every purchase credited exactly once.
2. No hold is left open, no call is still active, no stream still live.
3. Every call charged exactly ``floor(billed_seconds * rate / 60)``; never
   more seconds than the harness saw it live (accept to hang-up or kill,
   plus a second of slack for the accept round trip); never less than the
   last tick a client saw minus one flush interval's worth; and exactly the
   totals its client got when it hung up cleanly.
4. Every PaymentIntent whose ``succeeded`` webhook was acknowledged was
   credited exactly once.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from loadtest.spawn import run_ledger_verify


@dataclass
class CallRecord:
    """What the harness saw of one call (monotonic times)."""

    session: str
    accepted_at: float
    last_tick: int = 0
    ended_at: float | None = None
    final: int | None = None


@dataclass
class Check:
    name: str
    checked: int
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


async def audit(
    env: dict[str, str],
    dsn: str,
    calls: dict[str, CallRecord],
    succeeded: set[str],
    flush_interval: float,
    rate: int,
) -> dict[str, Any]:
    checks: list[Check] = []
    ok, output = run_ledger_verify(env)
    checks.append(Check("ledger verify", 1, [] if ok else [output[-2000:]]))
    conn = await asyncpg.connect(dsn)
    try:
        open_holds = await conn.fetchval("SELECT count(*) FROM open_holds")
        hold_details = await conn.fetch(
            """SELECT t.key, t.reference, t.created_at, s.status, s.end_reason
               FROM open_holds h JOIN transfers t ON t.id = h.transfer_id
               LEFT JOIN sessions s ON s.id = t.reference LIMIT 5"""
        )
        active = await conn.fetchval("SELECT count(*) FROM sessions WHERE status = 'active'")
        live = await conn.fetchval("SELECT count(*) FROM streams WHERE status = 'live'")
        checks.append(
            Check(
                "nothing left open",
                3,
                [
                    f"{name}: {count}"
                    for name, count in (
                        ("open holds", open_holds),
                        ("active calls", active),
                        ("live streams", live),
                    )
                    if count
                ]
                + [f"open hold {dict(r)}" for r in hold_details],
            )
        )
        rows = await conn.fetch(
            "SELECT id, rate_per_minute, billed_seconds, tokens_charged, end_reason FROM sessions"
        )
        exact: list[str] = []
        bounds: list[str] = []
        now = time.monotonic()
        lag = math.ceil(rate * flush_interval / 60) + 1
        for row in rows:
            expected = row["rate_per_minute"] * row["billed_seconds"] // 60
            if row["tokens_charged"] != expected:
                exact.append(
                    f"{row['id']}: charged {row['tokens_charged']} for {row['billed_seconds']} s "
                    f"at {row['rate_per_minute']}/min (expected {expected})"
                )
            seen = calls.get(row["id"])
            if seen is None:
                continue
            live_for = (seen.ended_at or now) - seen.accepted_at
            if row["billed_seconds"] > live_for + 1:
                bounds.append(
                    f"{row['id']}: billed {row['billed_seconds']} s but was live {live_for:.1f} s"
                )
            if row["tokens_charged"] < seen.last_tick - lag:
                bounds.append(
                    f"{row['id']}: charged {row['tokens_charged']} < last tick {seen.last_tick} - {lag}"
                )
            if seen.final is not None and row["tokens_charged"] != seen.final:
                bounds.append(
                    f"{row['id']}: charged {row['tokens_charged']} but the client was told "
                    f"{seen.final}"
                )
        checks.append(Check("calls charged exactly floor(seconds x rate / 60)", len(rows), exact))
        checks.append(Check("calls within what clients saw", len(calls), bounds))
        credited = await conn.fetch(
            """SELECT p.payment_intent_id, count(t.id) AS n FROM purchases p
               LEFT JOIN transfers t ON t.key = 'purchase:' || p.payment_intent_id
               WHERE p.payment_intent_id = ANY($1::text[])
               GROUP BY p.payment_intent_id""",
            sorted(succeeded),
        )
        counts = {r["payment_intent_id"]: r["n"] for r in credited}
        stripe = [
            f"{pi}: credited {counts.get(pi, 0)} times" for pi in succeeded if counts.get(pi) != 1
        ]
        checks.append(Check("each paid intent credited once", len(succeeded), stripe))
        negative = await conn.fetchval(
            """SELECT count(*) FROM accounts WHERE debits_must_not_exceed_credits
               AND credits_posted - debits_posted - debits_pending < 0"""
        )
        checks.append(
            Check(
                "no spendable balance below zero", 1, [f"{negative} accounts"] if negative else []
            )
        )
        totals = await conn.fetchrow(
            "SELECT sum(debits_posted) = sum(credits_posted) AS posted, "
            "sum(debits_pending) = sum(credits_pending) AS pending FROM accounts"
        )
        assert totals is not None
        checks.append(
            Check(
                "total debits = total credits",
                2,
                [] if totals["posted"] and totals["pending"] else [f"{dict(totals)}"],
            )
        )
        figures = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM transfers) AS transfers, "
            "(SELECT count(*) FROM sessions) AS calls, "
            "(SELECT count(*) FROM stripe_events) AS stripe_events"
        )
        assert figures is not None
    finally:
        await conn.close()
    violations = sum(len(c.violations) for c in checks)
    return {
        "ok": violations == 0,
        "violations": violations,
        "checks": [
            {"name": c.name, "checked": c.checked, "ok": c.ok, "violations": c.violations[:20]}
            for c in checks
        ],
        "database": dict(figures),
    }
