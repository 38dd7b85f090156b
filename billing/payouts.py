"""Creator payouts: earned tokens become a Stripe transfer to a connected account.

Three steps, each safe to repeat, so a crash anywhere leaves nothing lost:

1. *reserve* (one transaction): the ``pending`` payout row is inserted and
   its tokens move earnings -> payout_pending (key ``payout:<id>:reserve``);
2. *transfer*: Stripe is asked for a transfer under the idempotency key
   ``payout:<id>`` (also its ``transfer_group``) with the amount and
   destination stored on the row;
3. *finish* (one transaction, only while the row is still ``pending``):
   paid -> payout_pending -> payouts_settled (``payout:<id>:settle``);
   refused -> payout_pending -> earnings (``payout:<id>:return``), ``failed``.

If Stripe's answer is unknown (network, 5xx) the payout stays ``pending``;
:func:`resume_pending_payouts` finds the transfer by its group or repeats
step 2 with the same key, then finishes. Amounts are
``tokens * DIGIS_TOKEN_VALUE_CENTS`` US cents.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from billing.ledger import InsufficientTokens, Ledger, LedgerError, UnknownAccount
from billing.stripe_gateway import (
    PaymentProviderError,
    PaymentsDisabled,
    StripeGateway,
    TransferReceipt,
)
from storage import ledger as store
from storage import payments
from storage.ledger import Op
from storage.payments import PayoutRow

log = logging.getLogger("digis.payouts")

CURRENCY = "usd"
#: pg advisory lock key held by the node running automatic payouts ("payout").
AUTO_PAYOUT_LOCK = 0x7061796F7574
_MAX_CENTS = 2**31 - 1


class PayoutRefused(Exception):
    """The payout cannot be made; ``reason`` is below_minimum, too_large or no_payout_account."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class PayoutNotice:
    user_id: int
    payout: str
    status: str
    tokens: int


@dataclass(frozen=True, slots=True)
class PayoutOutcome:
    """Where a payout stands after a request or a resume (status pending, paid or failed)."""

    payout: str
    user_id: int
    tokens: int
    amount_cents: int
    currency: str
    status: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class AutoPayoutRun:
    """``ran`` is false when another node held the lock (nothing was done)."""

    ran: bool
    payouts: list[PayoutOutcome] = field(default_factory=list)


Notify = Callable[[PayoutNotice], None]


async def request_payout(
    ledger: Ledger,
    gateway: StripeGateway,
    *,
    user_id: int,
    tokens: int,
    minimum: int,
    token_value_cents: int,
    automatic: bool = False,
    notify: Notify | None = None,
) -> PayoutOutcome:
    """Pay ``tokens`` of the creator's available earnings out through Stripe.

    Raises :class:`PayoutRefused`, :class:`PaymentsDisabled`,
    :class:`~billing.ledger.InsufficientTokens` (more than available) or
    :class:`~billing.ledger.UnknownAccount` (not a creator); nothing moved then.
    A refusal by Stripe returns an outcome with status ``failed`` (tokens back
    in earnings); an unknown answer one with status ``pending``.
    """
    if not gateway.enabled:
        raise PaymentsDisabled()
    if tokens < minimum:
        raise PayoutRefused("below_minimum", f"the minimum payout is {minimum} tokens")
    amount_cents = tokens * token_value_cents
    if amount_cents > _MAX_CENTS:
        raise PayoutRefused("too_large", "a single payout is limited to $21,474,836.47")
    destination = await payments.payout_account(ledger.pool, user_id)
    if destination is None:
        raise PayoutRefused("no_payout_account", "no Stripe payout account is connected")
    payout = await reserve_payout(
        ledger,
        user_id=user_id,
        tokens=tokens,
        amount_cents=amount_cents,
        destination=destination,
        automatic=automatic,
    )
    return await _transfer(ledger, gateway, payout, notify, look_first=False)


async def reserve_payout(
    ledger: Ledger,
    *,
    user_id: int,
    tokens: int,
    amount_cents: int,
    destination: str,
    automatic: bool = False,
) -> PayoutRow:
    """Step 1: insert the pending payout and reserve its tokens, atomically."""
    accounts = await ledger.accounts_of(user_id)
    if accounts.earnings is None or accounts.payout_pending is None:
        raise UnknownAccount("only creators have earnings to pay out")
    payout_id = f"payout_{uuid.uuid4().hex}"
    op = Op(
        "transfer",
        f"payout:{payout_id}:reserve",
        debit=accounts.earnings,
        credit=accounts.payout_pending,
        amount=tokens,
        kind="payout_reserve",
        reference=payout_id,
    )
    async with ledger.pool.acquire() as conn, conn.transaction():
        row = await payments.insert_payout(
            conn,
            payout_id=payout_id,
            user_id=user_id,
            tokens=tokens,
            amount_cents=amount_cents,
            currency=CURRENCY,
            destination=destination,
            automatic=automatic,
        )
        (result,) = await store.apply(conn, [op])
        if result.status == "insufficient":
            raise InsufficientTokens(result.debit_spendable)
        if result.status != "ok":
            raise LedgerError(f"payout reserve refused: {result.status}")
    if ledger.on_change is not None:
        ledger.on_change({user_id})
    return row


async def _transfer(
    ledger: Ledger,
    gateway: StripeGateway,
    payout: PayoutRow,
    notify: Notify | None,
    *,
    look_first: bool,
) -> PayoutOutcome:
    """Steps 2 and 3. ``look_first``: find an earlier transfer by group before creating."""
    key = f"payout:{payout.id}"
    try:
        receipt: TransferReceipt | None = None
        if look_first:
            receipt = await gateway.find_transfer(key)
        if receipt is None:
            if payout.destination is None:
                raise PaymentProviderError("the payout has no destination recorded")
            receipt = await gateway.create_transfer(
                amount_cents=payout.amount_cents,
                currency=payout.currency,
                destination=payout.destination,
                idempotency_key=key,
                metadata={
                    "payout_id": payout.id,
                    "user_id": str(payout.user_id),
                    "tokens": str(payout.tokens),
                },
            )
    except PaymentProviderError as exc:
        if exc.retryable:
            log.warning("payout outcome unknown; left pending", extra={"payout": payout.id})
            return _outcome(payout, "pending", exc.message)
        status = await finish_payout(ledger, payout, failure=exc.message, notify=notify)
        return _outcome(payout, status, exc.message)
    status = await finish_payout(ledger, payout, transfer_id=receipt.id, notify=notify)
    return _outcome(payout, status)


def _outcome(payout: PayoutRow, status: str, message: str = "") -> PayoutOutcome:
    return PayoutOutcome(
        payout=payout.id,
        user_id=payout.user_id,
        tokens=payout.tokens,
        amount_cents=payout.amount_cents,
        currency=payout.currency,
        status=status,
        message=message,
    )


async def finish_payout(
    ledger: Ledger,
    payout: PayoutRow,
    *,
    transfer_id: str | None = None,
    failure: str | None = None,
    notify: Notify | None = None,
) -> str:
    """Step 3: settle (``transfer_id``) or return the tokens (``failure``), once.

    Returns the payout's status; if another worker finished it first, its
    status is returned and nothing moves.
    """
    accounts = await ledger.accounts_of(payout.user_id)
    assert accounts.earnings is not None and accounts.payout_pending is not None
    paid = transfer_id is not None
    op = Op(
        "transfer",
        f"payout:{payout.id}:{'settle' if paid else 'return'}",
        debit=accounts.payout_pending,
        credit=ledger.accounts.payouts_settled if paid else accounts.earnings,
        amount=payout.tokens,
        kind="payout" if paid else "payout_return",
        reference=payout.id,
    )
    status = "paid" if paid else "failed"
    async with ledger.pool.acquire() as conn, conn.transaction():
        row = await payments.pending_payout_for_update(conn, payout.id)
        if row is None:
            current = await payments.get_payout(conn, payout.id)
            return current.status if current is not None else "failed"
        (result,) = await store.apply(conn, [op])
        if not result.applied:
            raise LedgerError(f"payout {payout.id} {op.key} refused: {result.status}")
        await payments.finish_payout(
            conn,
            payout.id,
            status=status,
            transfer_id=transfer_id,
            failure_message=None if paid else (failure or "payout failed")[:500],
        )
    log.info("payout finished", extra={"payout": payout.id, "status": status})
    if ledger.on_change is not None:
        ledger.on_change({payout.user_id})
    if notify is not None:
        notify(PayoutNotice(payout.user_id, payout.id, status, payout.tokens))
    return status


async def resume_pending_payouts(
    ledger: Ledger,
    gateway: StripeGateway,
    *,
    older_than: float = 60.0,
    notify: Notify | None = None,
) -> list[PayoutOutcome]:
    """Finish payouts left ``pending`` for ``older_than`` seconds (a node died mid-way).

    Each is first looked up at Stripe by its transfer group, then retried with
    its original idempotency key, so a transfer that did go through is never
    repeated. Safe to run on several nodes at once.
    """
    if not gateway.enabled:
        return []
    outcomes: list[PayoutOutcome] = []
    for payout in await payments.stale_pending_payouts(ledger.pool, older_than):
        outcomes.append(await _transfer(ledger, gateway, payout, notify, look_first=True))
    return outcomes


async def run_auto_payouts(
    ledger: Ledger,
    gateway: StripeGateway,
    *,
    minimum: int,
    token_value_cents: int,
    notify: Notify | None = None,
) -> AutoPayoutRun:
    """Pay out every creator whose available earnings reach ``minimum``.

    One node at a time: the run holds a PostgreSQL advisory lock, and a node
    that cannot take it returns ``AutoPayoutRun(ran=False)`` at once.
    """
    if not gateway.enabled:
        return AutoPayoutRun(ran=False)
    async with ledger.pool.acquire() as lock_conn:
        if not await payments.try_advisory_lock(lock_conn, AUTO_PAYOUT_LOCK):
            return AutoPayoutRun(ran=False)
        try:
            run = AutoPayoutRun(ran=True)
            for user_id, available in await payments.creators_due(ledger.pool, minimum):
                try:
                    outcome = await request_payout(
                        ledger,
                        gateway,
                        user_id=user_id,
                        tokens=available,
                        minimum=minimum,
                        token_value_cents=token_value_cents,
                        automatic=True,
                        notify=notify,
                    )
                except (InsufficientTokens, UnknownAccount, PayoutRefused) as exc:
                    log.info("automatic payout skipped", extra={"user": user_id, "why": repr(exc)})
                    continue
                run.payouts.append(outcome)
            return run
        finally:
            await payments.advisory_unlock(lock_conn, AUTO_PAYOUT_LOCK)


async def auto_payout_loop(
    ledger: Ledger,
    gateway: StripeGateway,
    *,
    interval: float,
    minimum: int,
    token_value_cents: int,
    notify: Notify | None = None,
) -> None:
    """Run :func:`run_auto_payouts` every ``interval`` seconds, forever.

    Stuck payouts are not resumed here: the server's own sweep
    (``server/payments_http.py``) runs :func:`resume_pending_payouts`.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            run = await run_auto_payouts(
                ledger,
                gateway,
                minimum=minimum,
                token_value_cents=token_value_cents,
                notify=notify,
            )
            if run.payouts:
                log.info("automatic payouts", extra={"count": len(run.payouts)})
        except Exception:
            log.warning("automatic payout run failed", exc_info=True)
