"""SQL side of the ledger: the batched apply function, account lookup, reads.

All writes go through ``ledger_apply`` (migration 0002): one statement applies
an ordered batch of operations atomically, locking the touched accounts in id
order. Billing code builds :class:`Op` values; nothing here knows about
calls, tips or Stripe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db import Executor

SHARDS = 16


@dataclass(frozen=True, slots=True)
class Op:
    """One ledger operation (see ``ledger_apply`` for the semantics of each)."""

    op: str
    key: str
    debit: int | None = None
    credit: int | None = None
    amount: int | None = None
    kind: str = ""
    reference: str = ""
    fee: int = 0
    fee_credit: int | None = None
    pending_key: str | None = None
    timeout: int | None = None
    balancing: bool = False


@dataclass(frozen=True, slots=True)
class OpResult:
    status: str
    transfer_id: int | None
    amount: int | None
    debit_spendable: int | None

    @property
    def applied(self) -> bool:
        """True when the operation took effect now or earlier (idempotent replay)."""
        return self.status in ("ok", "exists")


@dataclass(frozen=True, slots=True)
class UserAccounts:
    user_id: int
    wallet: int
    frozen: int
    receivable: int
    earnings: int | None
    payout_pending: int | None


@dataclass(frozen=True, slots=True)
class SystemAccounts:
    platform_revenue: tuple[int, ...]
    escrow: tuple[int, ...]
    stripe_clearing: int
    payouts_settled: int

    def revenue_for(self, user_id: int) -> int:
        return self.platform_revenue[user_id % SHARDS]

    def escrow_for(self, user_id: int) -> int:
        return self.escrow[user_id % SHARDS]


@dataclass(frozen=True, slots=True)
class Balances:
    balance: int
    held: int
    spendable: int
    earnings: int
    debt: int
    frozen: int


_APPLY_SQL = """
SELECT idx, status, transfer_id, amount, debit_spendable
FROM ledger_apply($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[],
                  $7::bigint[], $8::text[], $9::text[], $10::text[], $11::integer[], $12::boolean[])
"""


async def apply(conn: Executor, ops: Sequence[Op]) -> list[OpResult]:
    """Apply ``ops`` in order in one statement; one result per op, same order."""
    if not ops:
        return []
    rows = await conn.fetch(
        _APPLY_SQL,
        [o.op for o in ops],
        [o.key for o in ops],
        [o.debit for o in ops],
        [o.credit for o in ops],
        [o.amount for o in ops],
        [o.fee for o in ops],
        [o.fee_credit for o in ops],
        [o.kind for o in ops],
        [o.reference for o in ops],
        [o.pending_key for o in ops],
        [o.timeout for o in ops],
        [o.balancing for o in ops],
    )
    results = [OpResult("invalid", None, None, None)] * len(ops)
    for row in rows:
        results[row["idx"] - 1] = OpResult(
            row["status"], row["transfer_id"], row["amount"], row["debit_spendable"]
        )
    return results


async def system_accounts(conn: Executor) -> SystemAccounts:
    rows = await conn.fetch(
        "SELECT id, kind, shard FROM accounts WHERE user_id IS NULL ORDER BY kind, shard"
    )
    by_kind: dict[str, list[int]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row["id"])
    return SystemAccounts(
        platform_revenue=tuple(by_kind["platform_revenue"]),
        escrow=tuple(by_kind["escrow"]),
        stripe_clearing=by_kind["stripe_clearing"][0],
        payouts_settled=by_kind["payouts_settled"][0],
    )


async def user_accounts(conn: Executor, user_id: int) -> UserAccounts | None:
    rows = await conn.fetch("SELECT id, kind FROM accounts WHERE user_id = $1", user_id)
    if not rows:
        return None
    ids = {row["kind"]: row["id"] for row in rows}
    return UserAccounts(
        user_id=user_id,
        wallet=ids["wallet"],
        frozen=ids["frozen"],
        receivable=ids["receivable"],
        earnings=ids.get("earnings"),
        payout_pending=ids.get("payout_pending"),
    )


async def balances(conn: Executor, user_id: int) -> Balances:
    rows = await conn.fetch(
        """SELECT kind, credits_posted, debits_posted, debits_pending
           FROM accounts WHERE user_id = $1""",
        user_id,
    )
    figures = {
        row["kind"]: (row["credits_posted"], row["debits_posted"], row["debits_pending"])
        for row in rows
    }
    return _balances_from(figures)


def _balances_from(figures: dict[str, tuple[int, int, int]]) -> Balances:
    cp, dp, pend = figures.get("wallet", (0, 0, 0))
    e_cp, e_dp, e_pend = figures.get("earnings", (0, 0, 0))
    r_cp, r_dp, _ = figures.get("receivable", (0, 0, 0))
    f_cp, f_dp, _ = figures.get("frozen", (0, 0, 0))
    return Balances(
        balance=cp - dp,
        held=pend,
        spendable=cp - dp - pend,
        earnings=e_cp - e_dp - e_pend,
        debt=max(0, r_dp - r_cp),
        frozen=f_cp - f_dp,
    )


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    kind: str
    amount: int
    outgoing: bool
    counterparty: str
    reference: str
    created_at: dt.datetime


async def entries(
    conn: Executor, user_id: int, *, limit: int, before_id: int | None, kind: str | None
) -> list[Entry]:
    """Posted entries touching the user's wallet or earnings, newest first."""
    rows = await conn.fetch(
        """WITH mine AS (SELECT id FROM accounts WHERE user_id = $1 AND kind IN ('wallet', 'earnings'))
           SELECT t.id, t.kind, t.amount, t.reference, t.created_at,
                  (t.debit_account_id IN (SELECT id FROM mine)) AS outgoing,
                  CASE WHEN t.debit_account_id IN (SELECT id FROM mine)
                       THEN coalesce(cu.username, ca.kind) ELSE coalesce(du.username, da.kind)
                  END AS counterparty
           FROM transfers t
           JOIN accounts da ON da.id = t.debit_account_id
           JOIN accounts ca ON ca.id = t.credit_account_id
           LEFT JOIN users du ON du.id = da.user_id
           LEFT JOIN users cu ON cu.id = ca.user_id
           WHERE (t.debit_account_id IN (SELECT id FROM mine) OR t.credit_account_id IN (SELECT id FROM mine))
             AND t.phase IN ('single', 'post')
             AND ($2::bigint IS NULL OR t.id < $2)
             AND ($3::text IS NULL OR t.kind = $3)
             AND NOT (t.debit_account_id IN (SELECT id FROM mine) AND t.credit_account_id IN (SELECT id FROM mine))
           ORDER BY t.id DESC LIMIT $4""",
        user_id,
        before_id,
        kind,
        limit,
    )
    return [Entry(**dict(r.items())) for r in rows]


async def earnings_by_day_and_kind(
    conn: Executor, user_id: int, since: dt.datetime
) -> list[tuple[dt.date, str, int]]:
    """Net credits to the user's earnings account, grouped by UTC day and kind."""
    rows = await conn.fetch(
        """SELECT (t.created_at AT TIME ZONE 'UTC')::date AS day, t.kind, sum(t.amount)::bigint AS tokens
           FROM transfers t JOIN accounts a ON a.id = t.credit_account_id
           WHERE a.user_id = $1 AND a.kind = 'earnings' AND t.phase IN ('single', 'post')
             AND t.created_at >= $2
           GROUP BY 1, 2 ORDER BY 1, 2""",
        user_id,
        since,
    )
    return [(r["day"], r["kind"], int(r["tokens"])) for r in rows]


async def expired_holds(conn: Executor, limit: int = 500) -> list[str]:
    """Keys of pending transfers past their timeout and still open."""
    rows = await conn.fetch(
        """SELECT t.key FROM open_holds h JOIN transfers t ON t.id = h.transfer_id
           WHERE h.expires_at < now() ORDER BY h.expires_at LIMIT $1""",
        limit,
    )
    return [r["key"] for r in rows]


async def orphaned_call_holds(conn: Executor, older_than: float) -> list[tuple[str, int]]:
    """Open call holds (key, fan's user id) whose session has ended, or that have
    no session row and are older than ``older_than`` seconds."""
    rows = await conn.fetch(
        """SELECT t.key, a.user_id FROM open_holds h
           JOIN transfers t ON t.id = h.transfer_id
           JOIN accounts a ON a.id = h.debit_account_id
           LEFT JOIN sessions s ON s.id = t.reference
           WHERE t.kind = 'call_hold'
             AND (s.status = 'ended'
                  OR (s.id IS NULL AND t.created_at < now() - make_interval(secs => $1)))""",
        older_than,
    )
    return [(r["key"], r["user_id"]) for r in rows]


async def balances_many(conn: Executor, user_ids: list[int]) -> dict[int, Balances]:
    """Balances of several users in one query (for coalesced balance pushes)."""
    rows = await conn.fetch(
        """SELECT user_id, kind, credits_posted, debits_posted, debits_pending
           FROM accounts WHERE user_id = ANY($1::int[])""",
        user_ids,
    )
    figures: dict[int, dict[str, tuple[int, int, int]]] = {}
    for row in rows:
        figures.setdefault(row["user_id"], {})[row["kind"]] = (
            row["credits_posted"],
            row["debits_posted"],
            row["debits_pending"],
        )
    return {user_id: _balances_from(kinds) for user_id, kinds in figures.items()}
