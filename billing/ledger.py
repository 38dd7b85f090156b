"""The ledger service: batched, ordered, idempotent money movements.

Every movement becomes :class:`storage.ledger.Op` values submitted here. One
writer task takes everything queued, applies it with a single
``ledger_apply`` statement (one transaction, one commit for many tips, holds
and postings), and resolves each submission with its results. Order of
submission is order of application.

Failure model. A batch that fails because PostgreSQL is unreachable changed
nothing, or (if the connection died during commit) may have committed: keys
make a retry harmless either way. Submissions marked ``retry`` (metering
postings, hold releases) stay queued and are retried with backoff until
they land; the others fail fast with :class:`LedgerUnavailable` so a client
request never hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import asyncpg

from billing.fees import fee_on
from storage import ledger as store
from storage.db import UNAVAILABLE_ERRORS
from storage.ledger import Op, OpResult, SystemAccounts, UserAccounts

log = logging.getLogger("digis.ledger")

#: Pending transfers of live calls expire after this long without a post or
#: void (a crashed node's calls are settled well before).
HOLD_TIMEOUT_SECONDS = 3600


_BATCH_ERRORS: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, asyncpg.PostgresError)


class LedgerError(Exception):
    """Base of the ledger's refusals (nothing moved)."""


class InsufficientTokens(LedgerError):
    def __init__(self, spendable: int | None) -> None:
        super().__init__("insufficient tokens")
        self.spendable = spendable


class IdempotencyConflict(LedgerError):
    """The key was used before with different fields."""


class UnknownAccount(LedgerError):
    """An account involved does not exist (unknown user, or not a creator)."""


class LedgerUnavailable(LedgerError):
    """PostgreSQL could not be reached; retry with the same key."""


class LedgerObserver(Protocol):
    def batch_committed(self, ops: int, seconds: float) -> None: ...


@dataclass(frozen=True, slots=True)
class Payment:
    """Outcome of a completed single-phase movement."""

    transfer_id: int
    amount: int
    fee: int
    payer_spendable: int
    replayed: bool


@dataclass(slots=True)
class _Submission:
    ops: list[Op]
    users: tuple[int, ...]
    retry: bool
    future: asyncio.Future[list[OpResult]]


def new_key(prefix: str) -> str:
    """A fresh server-chosen idempotency key."""
    return f"{prefix}:{uuid.uuid4().hex}"


class Ledger:
    def __init__(
        self,
        pool: asyncpg.Pool,
        fee_bps: int,
        *,
        on_change: Callable[[set[int]], None] | None = None,
        observer: LedgerObserver | None = None,
        max_batch_ops: int = 2000,
    ) -> None:
        self.pool = pool
        self.fee_bps = fee_bps
        self.on_change = on_change
        self.observer = observer
        self.max_batch_ops = max_batch_ops
        self.system: SystemAccounts | None = None
        self._accounts: OrderedDict[int, UserAccounts] = OrderedDict()
        self._queue: asyncio.Queue[_Submission] = asyncio.Queue()
        self._carry: list[_Submission] = []
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False
        self.batches = 0
        self.ops_applied = 0

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self.system = await store.system_accounts(self.pool)
        self._writer = asyncio.get_running_loop().create_task(self._run(), name="ledger-writer")

    async def stop(self, timeout: float = 5.0) -> None:
        """Apply what is queued (bounded by ``timeout``), then stop the writer."""
        self._stopping = True
        if self._writer is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer
        leftovers = self._carry + [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for submission in leftovers:
            if not submission.future.done():
                submission.future.set_exception(LedgerUnavailable("ledger stopped"))
        if leftovers:
            log.error("ledger stopped with unapplied submissions", extra={"count": len(leftovers)})

    # --- accounts ------------------------------------------------------------------

    @property
    def accounts(self) -> SystemAccounts:
        assert self.system is not None, "ledger not started"
        return self.system

    async def accounts_of(self, user_id: int) -> UserAccounts:
        cached = self._accounts.get(user_id)
        if cached is not None:
            self._accounts.move_to_end(user_id)
            return cached
        found = await store.user_accounts(self.pool, user_id)
        if found is None:
            raise UnknownAccount(f"user {user_id} has no accounts")
        self._accounts[user_id] = found
        if len(self._accounts) > 100_000:
            self._accounts.popitem(last=False)
        return found

    # --- submission ----------------------------------------------------------------

    async def submit(
        self, ops: Sequence[Op], users: Sequence[int], *, retry: bool = False
    ) -> list[OpResult]:
        """Queue ``ops`` (applied together, in order) and wait for their results."""
        if self._stopping and not retry:
            raise LedgerUnavailable("server is shutting down")
        future: asyncio.Future[list[OpResult]] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._queue.put_nowait(_Submission(list(ops), tuple(users), retry, future))
        return await future

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            if not self._carry and self._queue.empty():
                self._idle.set()
            batch = self._carry or [await self._queue.get()]
            self._carry = []
            size = sum(len(s.ops) for s in batch)
            while size < self.max_batch_ops and not self._queue.empty():
                submission = self._queue.get_nowait()
                batch.append(submission)
                size += len(submission.ops)
            started = time.perf_counter()
            try:
                results = await store.apply(self.pool, [op for s in batch for op in s.ops])
            except asyncpg.DeadlockDetectedError:
                self._carry = batch  # nothing applied; try again at once
                continue
            except Exception as exc:  # the writer must never die
                if not isinstance(exc, _BATCH_ERRORS):
                    log.error("ledger batch failed unexpectedly", exc_info=True)
                log.warning("ledger batch failed", extra={"ops": size, "error": repr(exc)})
                self._carry = [s for s in batch if s.retry]
                for submission in batch:
                    if not submission.retry and not submission.future.done():
                        submission.future.set_exception(LedgerUnavailable(str(exc)))
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.05
            elapsed = time.perf_counter() - started
            self.batches += 1
            self.ops_applied += size
            if self.observer is not None:
                self.observer.batch_committed(size, elapsed)
            offset = 0
            changed: set[int] = set()
            for submission in batch:
                part = results[offset : offset + len(submission.ops)]
                offset += len(submission.ops)
                if any(r.status == "ok" for r in part):
                    changed.update(submission.users)
                if not submission.future.done():
                    submission.future.set_result(part)
            if changed and self.on_change is not None:
                self.on_change(changed)

    # --- movements -----------------------------------------------------------------

    async def pay_creator(
        self, *, payer: int, creator: int, amount: int, key: str, kind: str, reference: str
    ) -> Payment:
        """Move ``amount`` from the payer's wallet to the creator's earnings, minus the fee."""
        payer_accounts = await self.accounts_of(payer)
        creator_accounts = await self.accounts_of(creator)
        if creator_accounts.earnings is None:
            raise UnknownAccount("the recipient is not a creator")
        fee = fee_on(amount, self.fee_bps)
        op = Op(
            "split",
            key,
            debit=payer_accounts.wallet,
            credit=creator_accounts.earnings,
            amount=amount,
            fee=fee,
            fee_credit=self.accounts.revenue_for(payer),
            kind=kind,
            reference=reference,
        )
        (result,) = await self.submit([op], (payer, creator))
        return self._payment(result, amount, fee)

    async def transfer(
        self, *, sender: int, recipient: int, amount: int, key: str, reference: str = ""
    ) -> Payment:
        """Wallet to wallet, no fee."""
        a = await self.accounts_of(sender)
        b = await self.accounts_of(recipient)
        op = Op(
            "transfer",
            key,
            debit=a.wallet,
            credit=b.wallet,
            amount=amount,
            kind="transfer",
            reference=reference,
        )
        (result,) = await self.submit([op], (sender, recipient))
        return self._payment(result, amount, 0)

    async def credit_purchase(self, *, user: int, tokens: int, key: str, reference: str) -> Payment:
        """Issue ``tokens`` into the user's wallet from Stripe clearing (a paid purchase)."""
        accounts = await self.accounts_of(user)
        op = Op(
            "transfer",
            key,
            debit=self.accounts.stripe_clearing,
            credit=accounts.wallet,
            amount=tokens,
            kind="purchase",
            reference=reference,
        )
        (result,) = await self.submit([op], (user,))
        return self._payment(result, tokens, 0)

    def _payment(self, result: OpResult, amount: int, fee: int) -> Payment:
        if result.status in ("ok", "exists"):
            assert result.transfer_id is not None
            return Payment(
                transfer_id=result.transfer_id,
                amount=amount,
                fee=fee,
                payer_spendable=result.debit_spendable or 0,
                replayed=result.status == "exists",
            )
        if result.status == "insufficient":
            raise InsufficientTokens(result.debit_spendable)
        if result.status == "conflict":
            raise IdempotencyConflict("idempotency key reused with a different body")
        if result.status == "not_found":
            raise UnknownAccount("account not found")
        raise LedgerError(f"ledger refused the movement: {result.status}")

    # --- two-phase holds (metered calls) ---------------------------------------------

    async def hold(
        self,
        *,
        fan: int,
        amount: int,
        key: str,
        reference: str,
        timeout: int = HOLD_TIMEOUT_SECONDS,
        balancing: bool = True,
    ) -> OpResult:
        """Reserve up to ``amount`` of the fan's spendable tokens in escrow.

        With ``balancing`` the hold takes what is there (status ``insufficient``
        only when nothing is spendable). Retried until PostgreSQL answers.
        """
        accounts = await self.accounts_of(fan)
        op = Op(
            "pending",
            key,
            debit=accounts.wallet,
            credit=self.accounts.escrow_for(fan),
            amount=amount,
            kind="call_hold",
            reference=reference,
            timeout=timeout,
            balancing=balancing,
        )
        (result,) = await self.submit([op], (fan,), retry=True)
        return result

    async def post_hold(
        self,
        *,
        fan: int,
        creator: int,
        hold_key: str,
        amount: int,
        fee: int,
        key: str,
        reference: str,
    ) -> list[OpResult]:
        """Post ``amount`` of a hold (the rest is released) and pay the creator from escrow."""
        creator_accounts = await self.accounts_of(creator)
        if creator_accounts.earnings is None:
            raise UnknownAccount("the call's creator has no earnings account")
        escrow = self.accounts.escrow_for(fan)
        ops = [
            Op("post", key, pending_key=hold_key, amount=amount, kind="call", reference=reference),
            Op(
                "split",
                key + ":pay",
                debit=escrow,
                credit=creator_accounts.earnings,
                amount=amount,
                fee=fee,
                fee_credit=self.accounts.revenue_for(fan),
                kind="call",
                reference=reference,
            ),
        ]
        return await self.submit(ops, (fan, creator), retry=True)

    async def void_hold(
        self, *, fan: int, hold_key: str, key: str, expire: bool = False
    ) -> OpResult:
        """Release a hold entirely."""
        op = Op("expire" if expire else "void", key, pending_key=hold_key, kind="call_release")
        (result,) = await self.submit([op], (fan,), retry=True)
        return result

    async def release_expired_holds(self) -> int:
        """Void pending transfers past their timeout; returns how many were released."""
        keys = await store.expired_holds(self.pool)
        if not keys:
            return 0
        ops = [Op("expire", f"{k}:expired", pending_key=k, kind="hold_expired") for k in keys]
        results = await self.submit(ops, (), retry=False)
        released = sum(1 for r in results if r.status == "ok")
        if released:
            log.info("expired holds released", extra={"count": released})
        return released

    async def balances(self, user_id: int) -> store.Balances:
        return await store.balances(self.pool, user_id)
