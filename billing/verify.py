"""``digis ledger verify``: recompute every balance from the transfers.

Runs in one REPEATABLE READ snapshot, so it is safe while the server runs.
Each check returns human-readable problems; an empty list means the ledger
is consistent:

1. every account's four totals equal the sums of its transfers;
2. total debits equal total credits, posted and pending;
3. no account that must not be overdrawn is (spendable >= 0);
4. ``open_holds`` lists exactly the unresolved pending transfers;
5. escrow holds nothing posted (postings are paid out in the same statement);
6. no pending transfer was posted for more than it reserved;
7. every succeeded purchase was credited exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

_RECOMPUTE = """
WITH open_pending AS (
    SELECT p.* FROM transfers p
    WHERE p.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
), flows AS (
    SELECT debit_account_id AS acct, amount AS dp, 0::bigint AS cp, 0::bigint AS dpe, 0::bigint AS cpe
      FROM transfers WHERE phase IN ('single', 'post')
    UNION ALL SELECT credit_account_id, 0, amount, 0, 0 FROM transfers WHERE phase IN ('single', 'post')
    UNION ALL SELECT debit_account_id, 0, 0, amount, 0 FROM open_pending
    UNION ALL SELECT credit_account_id, 0, 0, 0, amount FROM open_pending
), sums AS (
    SELECT acct, sum(dp) AS dp, sum(cp) AS cp, sum(dpe) AS dpe, sum(cpe) AS cpe FROM flows GROUP BY acct
)
SELECT a.id, a.kind, a.user_id,
       a.debits_posted, coalesce(s.dp, 0) AS r_dp,
       a.credits_posted, coalesce(s.cp, 0) AS r_cp,
       a.debits_pending, coalesce(s.dpe, 0) AS r_dpe,
       a.credits_pending, coalesce(s.cpe, 0) AS r_cpe
FROM accounts a LEFT JOIN sums s ON s.acct = a.id
WHERE a.debits_posted <> coalesce(s.dp, 0) OR a.credits_posted <> coalesce(s.cp, 0)
   OR a.debits_pending <> coalesce(s.dpe, 0) OR a.credits_pending <> coalesce(s.cpe, 0)
ORDER BY a.id
"""

_TOTALS = """
SELECT sum(debits_posted) AS dp, sum(credits_posted) AS cp,
       sum(debits_pending) AS dpe, sum(credits_pending) AS cpe
FROM accounts
"""

_OVERDRAWN = """
SELECT id, kind, user_id, credits_posted - debits_posted - debits_pending AS spendable
FROM accounts
WHERE debits_must_not_exceed_credits AND credits_posted - debits_posted - debits_pending < 0
"""

_OPEN_HOLDS = """
WITH open_pending AS (
    SELECT p.id, p.debit_account_id, p.amount FROM transfers p
    WHERE p.phase = 'pending' AND NOT EXISTS (SELECT 1 FROM transfers r WHERE r.pending_id = p.id)
)
SELECT coalesce(o.id, h.transfer_id) AS id FROM open_pending o
FULL JOIN open_holds h ON h.transfer_id = o.id
WHERE o.id IS NULL OR h.transfer_id IS NULL OR o.amount <> h.amount
   OR o.debit_account_id <> h.debit_account_id
"""

_ESCROW = """
SELECT id, shard, credits_posted - debits_posted AS posted
FROM accounts WHERE kind = 'escrow' AND credits_posted <> debits_posted
"""

_OVERPOSTED = """
SELECT r.id FROM transfers r JOIN transfers p ON p.id = r.pending_id
WHERE r.phase = 'post' AND r.amount > p.amount
"""

_PURCHASES = """
SELECT p.id, p.payment_intent_id, count(t.id) AS credits
FROM purchases p
LEFT JOIN transfers t ON t.key = 'purchase:' || p.payment_intent_id
WHERE p.status <> 'pending' AND p.status <> 'failed' AND p.payment_intent_id IS NOT NULL
GROUP BY p.id, p.payment_intent_id
HAVING count(t.id) <> 1
"""


@dataclass(frozen=True, slots=True)
class Report:
    problems: list[str]
    accounts: int
    transfers: int

    @property
    def ok(self) -> bool:
        return not self.problems


async def verify(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy) -> Report:
    """Check every invariant in one consistent snapshot."""
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for row in await conn.fetch(_RECOMPUTE):
            problems.append(
                f"account {row['id']} ({row['kind']}, user {row['user_id']}): stored "
                f"dp={row['debits_posted']} cp={row['credits_posted']} "
                f"dpe={row['debits_pending']} cpe={row['credits_pending']}, from transfers "
                f"dp={row['r_dp']} cp={row['r_cp']} dpe={row['r_dpe']} cpe={row['r_cpe']}"
            )
        totals = await conn.fetchrow(_TOTALS)
        assert totals is not None
        if totals["dp"] != totals["cp"]:
            problems.append(f"posted debits {totals['dp']} != posted credits {totals['cp']}")
        if totals["dpe"] != totals["cpe"]:
            problems.append(f"pending debits {totals['dpe']} != pending credits {totals['cpe']}")
        for row in await conn.fetch(_OVERDRAWN):
            problems.append(
                f"account {row['id']} ({row['kind']}, user {row['user_id']}) overdrawn: "
                f"spendable {row['spendable']}"
            )
        for row in await conn.fetch(_OPEN_HOLDS):
            problems.append(f"open_holds disagrees with transfers for pending transfer {row['id']}")
        for row in await conn.fetch(_ESCROW):
            problems.append(f"escrow shard {row['shard']} holds {row['posted']} posted tokens")
        for row in await conn.fetch(_OVERPOSTED):
            problems.append(f"transfer {row['id']} posted more than its pending transfer")
        for row in await conn.fetch(_PURCHASES):
            problems.append(
                f"purchase {row['id']} ({row['payment_intent_id']}) credited {row['credits']} times"
            )
        accounts = await conn.fetchval("SELECT count(*) FROM accounts")
        transfers = await conn.fetchval("SELECT count(*) FROM transfers")
    return Report(problems=problems, accounts=int(accounts), transfers=int(transfers))
