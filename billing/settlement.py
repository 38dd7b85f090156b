"""Settle calls whose actor is gone (server crash): never charge beyond the checkpoint.

A call's usage is checkpointed every flush interval; its holds are pending
transfers referencing the session. Settling posts, across the call's open
holds in order, exactly ``checkpoint - already posted`` tokens (with the
cumulative fee rule), voids what is left, and marks the call ended. Keys are
derived from the hold keys, so settling twice (two nodes, a retry) is harmless.

The ledger can be ahead of the checkpoint (a renewal or the final post
committed, the process died before the next checkpoint): those posts came
from the meter, so they stand, and the billed seconds recorded are raised to
the fewest seconds that cost that much, keeping seconds and charge consistent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from billing.fees import fee_increment, fee_on
from billing.ledger import Ledger
from billing.metering import seconds_for_tokens
from storage import ledger as ledger_store
from storage import sessions
from storage.ledger import Op
from storage.sessions import CallCheckpoint, CallRow

log = logging.getLogger("digis.settlement")


@dataclass(frozen=True, slots=True)
class Settled:
    session: str
    charged: int
    posted_now: int
    released_holds: int


async def _hold_state(pool: asyncpg.Pool, session: str) -> tuple[list[tuple[str, int]], int]:
    """Open holds (key, amount) in creation order, and tokens already posted."""
    rows = await pool.fetch(
        """SELECT p.key, p.amount FROM transfers p
           WHERE p.reference = $1 AND p.phase = 'pending'
             AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
           ORDER BY p.id""",
        session,
    )
    posted = await pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM transfers WHERE reference = $1 AND phase = 'post'",
        session,
    )
    return [(r["key"], int(r["amount"])) for r in rows], int(posted)


async def settle_call(pool: asyncpg.Pool, ledger: Ledger, call: CallRow) -> Settled:
    """Post the checkpointed usage of ``call``, release the rest, end the call."""
    holds, posted = await _hold_state(pool, call.id)
    posted_before = posted
    target = max(call.tokens_charged, posted)
    remaining = target - posted
    released = 0
    for hold_key, amount in holds:
        if remaining > 0:
            take = min(remaining, amount)
            fee = fee_increment(posted, posted + take, call.fee_bps)
            results = await ledger.post_hold(
                fan=call.fan_id,
                creator=call.creator_id,
                hold_key=hold_key,
                amount=take,
                fee=fee,
                key=f"{hold_key}:settle",
                reference=call.id,
            )
            if results[0].applied:
                posted += take
                remaining -= take
        else:
            await ledger.void_hold(fan=call.fan_id, hold_key=hold_key, key=f"{hold_key}:settle")
            released += 1
    fee = fee_on(posted, call.fee_bps)
    seconds = max(call.billed_seconds, seconds_for_tokens(call.rate_per_minute, posted))
    checkpoint = CallCheckpoint(call.id, seconds, posted, fee, posted - fee)
    await sessions.end_call(
        pool,
        session=call.id,
        totals=checkpoint,
        reason="server_error",
        ended_at=call.checkpoint_at.timestamp(),
    )
    log.warning(
        "call settled after its actor was lost",
        extra={"session": call.id, "charged": posted, "released_holds": released},
    )
    return Settled(call.id, posted, posted - posted_before, released)


async def release_orphaned_holds(
    pool: asyncpg.Pool, ledger: Ledger, *, older_than: float = 60.0
) -> int:
    """Void call holds whose session has ended, or never got a row.

    An ended call charges nothing more, so its holds can only be leftovers
    (a hold whose commit outcome was unknown when its call failed to start,
    a shutdown cancelling the ledger writer mid-commit, say): released at
    once. A call writes its row before its first hold, so a hold without a
    row older than ``older_than`` seconds is a leftover too.
    """
    holds = await ledger_store.orphaned_call_holds(pool, older_than)
    if holds:
        ops = [
            Op("void", f"{key}:orphan", pending_key=key, kind="call_release") for key, _ in holds
        ]
        await ledger.submit(ops, sorted({user for _, user in holds}), retry=True)
        log.warning("orphaned call holds released", extra={"holds": len(holds)})
    return len(holds)


async def settle_orphans(
    pool: asyncpg.Pool,
    ledger: Ledger,
    *,
    node_id: str,
    stale_seconds: float,
    live: set[str],
    include_own: bool,
    live_nodes: set[str] | None,
) -> list[Settled]:
    """Settle calls (and end streams) whose node is gone; see ``calls_to_settle``.

    ``live`` are the sessions this process is running or starting (never
    touched); ``include_own`` is for start-up only, when every active session
    of this node id belongs to its previous incarnation.
    """
    done: list[Settled] = []
    calls = await sessions.calls_to_settle(
        pool,
        node_id=node_id,
        stale_seconds=stale_seconds,
        include_own=include_own,
        live_nodes=live_nodes,
    )
    for call in calls:
        if call.id in live:
            continue
        done.append(await settle_call(pool, ledger, call))
    await release_orphaned_holds(pool, ledger)
    ended = await sessions.end_stale_streams(
        pool,
        node_id=node_id,
        stale_seconds=stale_seconds,
        include_own=include_own,
        live_nodes=live_nodes,
        live=live,
    )
    if ended:
        log.warning("streams ended after their node was lost", extra={"streams": ended})
    return done
