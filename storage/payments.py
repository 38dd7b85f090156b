"""SQL for token purchases, Stripe webhook bookkeeping, payouts and payout accounts.

Nothing here decides anything: billing computes what a purchase or payout
should become and these functions read and write the rows. Functions whose
name ends in ``_for_update`` (and :func:`lock_accounts`) take row locks and
must run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from storage.db import Conn, Executor

_PURCHASE_COLUMNS = (
    "id, user_id, package_id, tokens, amount_cents, currency, payment_intent_id, charge_id, "
    "status, paid, refunded_cents, tokens_clawed, debt_tokens, frozen_tokens, dispute_id, "
    "dispute_status, dispute_cents, failure_message"
)
_PAYOUT_COLUMNS = (
    "id, user_id, tokens, amount_cents, currency, status, destination, stripe_transfer_id, "
    "failure_message, automatic"
)

#: ``users.payment_flag`` values set by payments, least grave first: a flag is only raised.
FLAGS = ("dispute", "debt")


@dataclass(frozen=True, slots=True)
class PurchaseRow:
    id: str
    user_id: int
    package_id: str
    tokens: int
    amount_cents: int
    currency: str
    payment_intent_id: str | None
    charge_id: str | None
    status: str
    paid: bool
    refunded_cents: int
    tokens_clawed: int
    debt_tokens: int
    frozen_tokens: int
    dispute_id: str | None
    dispute_status: str | None
    dispute_cents: int
    failure_message: str | None


@dataclass(frozen=True, slots=True)
class PayoutRow:
    id: str
    user_id: int
    tokens: int
    amount_cents: int
    currency: str
    status: str
    destination: str | None
    stripe_transfer_id: str | None
    failure_message: str | None
    automatic: bool


def _purchase(record: asyncpg.Record | None) -> PurchaseRow | None:
    return None if record is None else PurchaseRow(**dict(record.items()))


def _payout(record: asyncpg.Record | None) -> PayoutRow | None:
    return None if record is None else PayoutRow(**dict(record.items()))


# --- purchases -------------------------------------------------------------------


async def insert_purchase(
    conn: Executor,
    *,
    purchase_id: str,
    user_id: int,
    package_id: str,
    tokens: int,
    amount_cents: int,
    currency: str,
    payment_intent_id: str | None = None,
) -> PurchaseRow | None:
    """Insert a pending purchase; ``None`` if one with this id or intent already exists."""
    return _purchase(
        await conn.fetchrow(
            f"""INSERT INTO purchases (id, user_id, package_id, tokens, amount_cents, currency,
                                       payment_intent_id)
                VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING
                RETURNING {_PURCHASE_COLUMNS}""",
            purchase_id,
            user_id,
            package_id,
            tokens,
            amount_cents,
            currency,
            payment_intent_id,
        )
    )


async def attach_intent(conn: Executor, purchase_id: str, payment_intent_id: str) -> None:
    """Record the PaymentIntent created for a purchase (a webhook may have done it first)."""
    await conn.execute(
        """UPDATE purchases SET payment_intent_id = $2, updated_at = now()
           WHERE id = $1 AND payment_intent_id IS NULL""",
        purchase_id,
        payment_intent_id,
    )


async def get_purchase(conn: Executor, purchase_id: str) -> PurchaseRow | None:
    return _purchase(
        await conn.fetchrow(f"SELECT {_PURCHASE_COLUMNS} FROM purchases WHERE id = $1", purchase_id)
    )


async def purchase_for_update(
    conn: Conn,
    *,
    payment_intent_id: str | None = None,
    charge_id: str | None = None,
    purchase_id: str | None = None,
) -> PurchaseRow | None:
    """Lock and return the purchase matching the intent, else the charge, else our id.

    A match by our own id only counts if the row has no intent yet or the same one.
    """
    return _purchase(
        await conn.fetchrow(
            f"""SELECT {_PURCHASE_COLUMNS} FROM purchases
                WHERE ($1::text IS NOT NULL AND payment_intent_id = $1)
                   OR ($2::text IS NOT NULL AND charge_id = $2)
                   OR ($3::text IS NOT NULL AND id = $3
                       AND (payment_intent_id IS NULL OR payment_intent_id = $1))
                ORDER BY (payment_intent_id = $1) DESC NULLS LAST, (charge_id = $2) DESC NULLS LAST
                LIMIT 1 FOR UPDATE""",
            payment_intent_id,
            charge_id,
            purchase_id,
        )
    )


async def save_purchase(conn: Conn, row: PurchaseRow) -> None:
    """Write every mutable field of ``row`` (facts, position, status)."""
    await conn.execute(
        """UPDATE purchases SET payment_intent_id = $2, charge_id = $3, status = $4, paid = $5,
                  refunded_cents = $6, tokens_clawed = $7, debt_tokens = $8, frozen_tokens = $9,
                  dispute_id = $10, dispute_status = $11, dispute_cents = $12,
                  failure_message = $13, updated_at = now()
           WHERE id = $1""",
        row.id,
        row.payment_intent_id,
        row.charge_id,
        row.status,
        row.paid,
        row.refunded_cents,
        row.tokens_clawed,
        row.debt_tokens,
        row.frozen_tokens,
        row.dispute_id,
        row.dispute_status,
        row.dispute_cents,
        row.failure_message,
    )


async def purchase_known(
    conn: Executor, payment_intent_id: str | None, charge_id: str | None
) -> bool:
    """Whether a purchase with this intent or charge is recorded (no lock)."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM purchases
                              WHERE ($1::text IS NOT NULL AND payment_intent_id = $1)
                                 OR ($2::text IS NOT NULL AND charge_id = $2))""",
            payment_intent_id,
            charge_id,
        )
    )


async def fail_purchase(conn: Executor, purchase_id: str, message: str) -> None:
    """Mark a purchase failed unless it has been paid meanwhile."""
    await conn.execute(
        """UPDATE purchases SET status = 'failed', failure_message = $2, updated_at = now()
           WHERE id = $1 AND NOT paid""",
        purchase_id,
        message[:500],
    )


async def user_and_package_exist(conn: Executor, user_id: int, package_id: str) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)
                  AND EXISTS (SELECT 1 FROM token_packages WHERE id = $2)""",
            user_id,
            package_id,
        )
    )


# --- webhook events ----------------------------------------------------------------


async def record_event(conn: Conn, event_id: str, event_type: str, object_id: str | None) -> bool:
    """Claim a Stripe event id; ``False`` if it was recorded before (a duplicate).

    A concurrent delivery of the same id waits on the unique index until the
    first transaction ends, then sees the duplicate.
    """
    inserted = await conn.fetchval(
        """INSERT INTO stripe_events (id, type, object_id, outcome) VALUES ($1, $2, $3, 'processing')
           ON CONFLICT (id) DO NOTHING RETURNING true""",
        event_id,
        event_type,
        object_id,
    )
    return bool(inserted)


async def set_event_outcome(conn: Conn, event_id: str, outcome: str) -> None:
    await conn.execute(
        "UPDATE stripe_events SET outcome = $2 WHERE id = $1", event_id, outcome[:200]
    )


async def event_outcome(conn: Executor, event_id: str) -> str | None:
    value = await conn.fetchval("SELECT outcome FROM stripe_events WHERE id = $1", event_id)
    return None if value is None else str(value)


# --- accounts and flags ---------------------------------------------------------------


async def lock_accounts(conn: Conn, ids: Sequence[int]) -> dict[int, int]:
    """Lock the accounts in id order (as ``ledger_apply`` does); id -> spendable.

    Taking every lock first, in the same order as the batched writer, means a
    webhook transaction queues behind a batch instead of deadlocking with it.
    """
    rows = await conn.fetch(
        """SELECT id, credits_posted - debits_posted - debits_pending AS spendable
           FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE""",
        list(ids),
    )
    return {int(r["id"]): int(r["spendable"]) for r in rows}


async def raise_payment_flag(conn: Conn, user_id: int, flag: str) -> None:
    """Set ``users.payment_flag`` to ``flag`` unless it holds an equal or graver flag.

    Flags set elsewhere (not in :data:`FLAGS`) count as graver and are kept.
    """
    await conn.execute(
        """UPDATE users SET payment_flag = $2, updated_at = now()
           WHERE id = $1 AND (payment_flag IS NULL
                              OR coalesce(array_position($3::text[], payment_flag), 999)
                                 < array_position($3::text[], $2))""",
        user_id,
        flag,
        list(FLAGS),
    )


# --- payouts ---------------------------------------------------------------------------


async def insert_payout(
    conn: Conn,
    *,
    payout_id: str,
    user_id: int,
    tokens: int,
    amount_cents: int,
    currency: str,
    destination: str,
    automatic: bool,
) -> PayoutRow:
    row = _payout(
        await conn.fetchrow(
            f"""INSERT INTO payouts
                    (id, user_id, tokens, amount_cents, currency, destination, automatic)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                RETURNING {_PAYOUT_COLUMNS}""",
            payout_id,
            user_id,
            tokens,
            amount_cents,
            currency,
            destination,
            automatic,
        )
    )
    assert row is not None
    return row


async def get_payout(conn: Executor, payout_id: str) -> PayoutRow | None:
    return _payout(
        await conn.fetchrow(f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE id = $1", payout_id)
    )


async def pending_payout_for_update(conn: Conn, payout_id: str) -> PayoutRow | None:
    """Lock the payout if it is still pending (``None`` once resolved)."""
    return _payout(
        await conn.fetchrow(
            f"SELECT {_PAYOUT_COLUMNS} FROM payouts WHERE id = $1 AND status = 'pending' FOR UPDATE",
            payout_id,
        )
    )


async def finish_payout(
    conn: Conn,
    payout_id: str,
    *,
    status: str,
    transfer_id: str | None = None,
    failure_message: str | None = None,
) -> None:
    await conn.execute(
        """UPDATE payouts SET status = $2, stripe_transfer_id = coalesce($3, stripe_transfer_id),
                  failure_message = $4, updated_at = now()
           WHERE id = $1""",
        payout_id,
        status,
        transfer_id,
        failure_message,
    )


async def stale_pending_payouts(conn: Executor, older_than_seconds: float) -> list[PayoutRow]:
    """Payouts still pending after ``older_than_seconds`` (their node may have died)."""
    rows = await conn.fetch(
        f"""SELECT {_PAYOUT_COLUMNS} FROM payouts
            WHERE status = 'pending' AND created_at <= now() - make_interval(secs => $1)
            ORDER BY created_at""",
        older_than_seconds,
    )
    return [PayoutRow(**dict(r.items())) for r in rows]


async def creators_due(conn: Executor, minimum: int) -> list[tuple[int, int]]:
    """(user id, available earnings) of active creators with a payout account and at
    least ``minimum`` tokens available, by user id."""
    rows = await conn.fetch(
        """SELECT a.user_id, a.credits_posted - a.debits_posted - a.debits_pending AS available
           FROM accounts a
           JOIN users u ON u.id = a.user_id
           JOIN payout_accounts p ON p.user_id = a.user_id
           WHERE a.kind = 'earnings' AND u.status = 'active'
             AND a.credits_posted - a.debits_posted - a.debits_pending >= $1
           ORDER BY a.user_id""",
        minimum,
    )
    return [(int(r["user_id"]), int(r["available"])) for r in rows]


async def payout_account(conn: Executor, user_id: int) -> str | None:
    value = await conn.fetchval(
        "SELECT stripe_account_id FROM payout_accounts WHERE user_id = $1", user_id
    )
    return None if value is None else str(value)


async def set_payout_account(conn: Executor, user_id: int, stripe_account_id: str) -> None:
    await conn.execute(
        """INSERT INTO payout_accounts (user_id, stripe_account_id) VALUES ($1, $2)
           ON CONFLICT (user_id) DO UPDATE SET stripe_account_id = $2, updated_at = now()""",
        user_id,
        stripe_account_id,
    )


async def try_advisory_lock(conn: Conn, key: int) -> bool:
    """Take a session-level advisory lock without waiting."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))


async def advisory_unlock(conn: Conn, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
