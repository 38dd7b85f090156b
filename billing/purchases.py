"""Buying tokens: start a purchase, then settle it from Stripe's webhooks.

Webhooks are processed transactionally (the event id is recorded with its
effect); the money each one implies is computed by ``billing.reconcile``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from billing.ledger import Ledger
from billing.reconcile import Settlement, facts_of, position_of, settle, status_of
from billing.stripe_gateway import (
    Intent,
    PaymentProviderError,
    PaymentsDisabled,
    StripeEvent,
    StripeGateway,
)
from storage import catalogue, payments
from storage import ledger as store
from storage.db import Conn
from storage.ledger import Op, UserAccounts
from storage.payments import PurchaseRow

log = logging.getLogger("digis.purchases")

SUCCEEDED = "payment_intent.succeeded"
FAILED = "payment_intent.payment_failed"
REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
DISPUTE_CLOSED = "charge.dispute.closed"
_SETTLING = (SUCCEEDED, REFUNDED, DISPUTE_CREATED, DISPUTE_CLOSED)
_MAX_TOKENS = 1_000_000_000


class UnknownPackage(LookupError):
    """No active token package with that id."""


class SettlementError(RuntimeError):
    """The ledger refused a settlement computed under lock (a bug or a key clash)."""


@dataclass(frozen=True, slots=True)
class StartedPurchase:
    purchase: str
    payment_intent: str
    client_secret: str
    tokens: int
    amount_cents: int
    currency: str


@dataclass(frozen=True, slots=True)
class PaymentNotice:
    """Tell the user a purchase changed (``tokens``: credited, or taken back)."""

    user_id: int
    purchase: str
    status: str
    tokens: int
    message: str = ""


@dataclass(frozen=True, slots=True)
class FlagNotice:
    """Tell the user a refund or dispute left debt or frozen tokens (user totals)."""

    user_id: int
    reason: str
    debt: int
    frozen: int


Notify = Callable[[PaymentNotice | FlagNotice], None]
IntentLookup = Callable[[str], Awaitable[Intent]]


# --- starting a purchase --------------------------------------------------------------


async def start_purchase(
    ledger: Ledger, gateway: StripeGateway, *, user_id: int, package_id: str
) -> StartedPurchase:
    """Record a pending purchase, then create its PaymentIntent.

    The row exists before Stripe hears of it, and the intent's idempotency key
    and metadata carry our purchase id, so a retry or a crash between the two
    steps can neither create a second intent nor lose the link.
    Raises :class:`UnknownPackage`, :class:`PaymentsDisabled`, :class:`PaymentProviderError`.
    """
    if not gateway.enabled:
        raise PaymentsDisabled()
    package = await catalogue.package(ledger.pool, package_id)
    if package is None:
        raise UnknownPackage(package_id)
    purchase_id = f"pur_{uuid.uuid4().hex}"
    await payments.insert_purchase(
        ledger.pool,
        purchase_id=purchase_id,
        user_id=user_id,
        package_id=package.id,
        tokens=package.tokens,
        amount_cents=package.price_cents,
        currency=package.currency,
    )
    try:
        intent = await gateway.create_payment_intent(
            purchase_id=purchase_id,
            user_id=user_id,
            package=package.id,
            tokens=package.tokens,
            amount_cents=package.price_cents,
            currency=package.currency,
        )
    except PaymentProviderError as exc:
        if not exc.retryable:
            await payments.fail_purchase(ledger.pool, purchase_id, exc.message)
        raise
    await payments.attach_intent(ledger.pool, purchase_id, intent.id)
    return StartedPurchase(
        purchase=purchase_id,
        payment_intent=intent.id,
        client_secret=intent.client_secret,
        tokens=package.tokens,
        amount_cents=package.price_cents,
        currency=package.currency,
    )


# --- webhooks ------------------------------------------------------------------------


@dataclass(slots=True)
class _Outcome:
    outcome: str
    user_id: int | None = None
    changed: bool = False
    notices: list[PaymentNotice | FlagNotice] | None = None


async def process_event(
    ledger: Ledger,
    event: StripeEvent,
    *,
    lookup: IntentLookup | None = None,
    notify: Notify | None = None,
) -> str:
    """Apply one verified webhook event exactly once; returns its recorded outcome.

    The event id is recorded in the same transaction as its effect, so a
    duplicate delivery returns ``"duplicate"`` and changes nothing. A refund or
    dispute of an intent unknown here is resolved through ``lookup`` (the
    intent's metadata) when given. Raises :class:`PaymentProviderError` (retryable)
    if that lookup could not be answered; database errors propagate (nothing
    was recorded, Stripe will deliver again).
    """
    if await payments.event_outcome(ledger.pool, event.id) is not None:
        return "duplicate"
    hint: Intent | None = None
    if (
        event.type in (REFUNDED, DISPUTE_CREATED, DISPUTE_CLOSED)
        and lookup is not None
        and event.intent is not None
        and not await payments.purchase_known(ledger.pool, event.intent, event.charge)
    ):
        try:
            hint = await lookup(event.intent)
        except PaymentProviderError as exc:
            if exc.retryable:
                raise
    async with ledger.pool.acquire() as conn, conn.transaction():
        if not await payments.record_event(conn, event.id, event.type, event.object_id):
            return "duplicate"
        result = await _dispatch(conn, ledger, event, hint)
        await payments.set_event_outcome(conn, event.id, result.outcome)
    log.info(
        "stripe event", extra={"event": event.id, "type": event.type, "outcome": result.outcome}
    )
    if result.user_id is not None:
        if result.changed and ledger.on_change is not None:
            ledger.on_change({result.user_id})
        if notify is not None:
            for notice in result.notices or ():
                notify(notice)
    return result.outcome


async def _dispatch(
    conn: Conn, ledger: Ledger, event: StripeEvent, hint: Intent | None
) -> _Outcome:
    if event.type not in (*_SETTLING, FAILED):
        log.info("stripe event type not handled", extra={"type": event.type, "event": event.id})
        return _Outcome("ignored: unhandled type")
    metadata = event.metadata if event.type in (SUCCEEDED, FAILED) else {}
    if hint is not None:
        metadata = hint.metadata
    row = await payments.purchase_for_update(
        conn,
        payment_intent_id=event.intent,
        charge_id=event.charge,
        purchase_id=metadata.get("purchase_id"),
    )
    if event.type == FAILED:
        return await _failed(conn, event, row)
    if row is None:
        amount = hint.amount if hint is not None else event.amount
        currency = hint.currency if hint is not None else event.currency
        row = await _adopt(conn, event.intent, metadata, amount, currency)
        if row is None:
            log.warning("stripe event for an unknown purchase", extra={"event": event.id})
            return _Outcome("unprocessable: unknown purchase, no usable metadata")
    facts = replace(
        row,
        paid=True,
        payment_intent_id=row.payment_intent_id or event.intent,
        charge_id=row.charge_id or event.charge,
    )
    if event.type == REFUNDED:
        refunded = max(row.refunded_cents, min(event.refunded, row.amount_cents))
        facts = replace(facts, refunded_cents=refunded)
        context = f"refund:{event.charge}:{event.refunded}"
    elif event.type in (DISPUTE_CREATED, DISPUTE_CLOSED):
        state = row.dispute_status
        if event.type == DISPUTE_CLOSED:
            state = "lost" if event.status == "lost" else "won"
        elif state is None:
            state = "open"
        facts = replace(
            facts,
            dispute_id=row.dispute_id or event.dispute,
            dispute_status=state,
            dispute_cents=row.dispute_cents or event.amount,
        )
        context = f"dispute:{event.dispute}:{'open' if event.type == DISPUTE_CREATED else state}"
    else:
        context = f"paid:{facts.payment_intent_id}"
    if facts.payment_intent_id is None:
        return _Outcome("unprocessable: purchase has no payment intent")
    return await _reconcile(conn, ledger, row, facts, context, event.type)


async def _failed(conn: Conn, event: StripeEvent, row: PurchaseRow | None) -> _Outcome:
    if row is None:
        return _Outcome("ignored: unknown payment intent")
    if row.paid:
        return _Outcome("ignored: already paid", row.user_id)
    message = event.message or "payment failed"
    await payments.save_purchase(
        conn,
        replace(
            row,
            status="failed",
            failure_message=message[:500],
            payment_intent_id=row.payment_intent_id or event.intent,
        ),
    )
    notice = PaymentNotice(row.user_id, row.id, "failed", row.tokens, message)
    return _Outcome("failed", row.user_id, notices=[notice])


async def _adopt(
    conn: Conn, intent: str | None, metadata: dict[str, str], amount: int, currency: str
) -> PurchaseRow | None:
    """Create the purchase row of an intent we never stored, from its metadata."""
    try:
        user_id = int(metadata["user_id"])
        tokens = int(metadata["tokens"])
        package_id = metadata["package"]
    except (KeyError, ValueError):
        return None
    purchase_id = metadata.get("purchase_id") or f"pur_{intent}"
    if intent is None or not 0 < tokens <= _MAX_TOKENS or not 0 < amount < 2**31:
        return None
    if not await payments.user_and_package_exist(conn, user_id, package_id):
        return None
    inserted = await payments.insert_purchase(
        conn,
        purchase_id=purchase_id,
        user_id=user_id,
        package_id=package_id,
        tokens=tokens,
        amount_cents=amount,
        currency=currency or "usd",
        payment_intent_id=intent,
    )
    return inserted or await payments.purchase_for_update(conn, payment_intent_id=intent)


def _ops(
    plan: Settlement, row: PurchaseRow, acc: UserAccounts, clearing: int, ctx: str
) -> list[Op]:
    legs = [
        (plan.credit, f"purchase:{row.payment_intent_id}", clearing, acc.wallet, "purchase"),
        (plan.from_frozen, f"{ctx}:frozen", acc.frozen, clearing, "clawback"),
        (plan.from_wallet, ctx, acc.wallet, clearing, "clawback"),
        (plan.debt, f"{ctx}:debt", acc.receivable, clearing, "payment_debt"),
        (plan.release, f"{ctx}:release", acc.frozen, acc.wallet, "dispute_release"),
        (plan.freeze, f"{ctx}:freeze", acc.wallet, acc.frozen, "dispute_freeze"),
    ]
    return [
        Op("transfer", key, debit=debit, credit=credit, amount=amount, kind=kind, reference=row.id)
        for amount, key, debit, credit, kind in legs
        if amount > 0
    ]


async def _reconcile(
    conn: Conn, ledger: Ledger, before: PurchaseRow, after: PurchaseRow, ctx: str, kind: str
) -> _Outcome:
    """Lock the user's accounts and clearing (id order), then book the settlement."""
    accounts = await store.user_accounts(conn, after.user_id)  # this connection: no second one
    if accounts is None:
        raise SettlementError(f"user {after.user_id} has no ledger accounts")
    clearing = ledger.accounts.stripe_clearing
    spendable = await payments.lock_accounts(
        conn, [accounts.wallet, accounts.frozen, accounts.receivable, clearing]
    )
    facts = facts_of(after)
    plan = settle(facts, position_of(before), spendable[accounts.wallet])
    ops = _ops(plan, after, accounts, clearing, ctx)
    results = await store.apply(conn, ops)
    for op, result in zip(ops, results, strict=True):
        if not (result.status == "ok" or (result.status == "exists" and op.kind == "purchase")):
            raise SettlementError(f"ledger refused {op.key}: {result.status}")
    pos = plan.position
    status = status_of(facts, before.status == "failed")
    await payments.save_purchase(
        conn,
        replace(
            after,
            status=status,
            tokens_clawed=pos.clawed,
            debt_tokens=pos.debt,
            frozen_tokens=pos.frozen,
        ),
    )
    user = after.user_id
    if pos.debt > 0:
        await payments.raise_payment_flag(conn, user, "debt")
    elif after.dispute_status is not None:
        await payments.raise_payment_flag(conn, user, "dispute")
    moved = plan.from_frozen + plan.from_wallet + plan.debt
    tokens = plan.credit if kind == SUCCEEDED else moved or plan.freeze or plan.release
    notices: list[PaymentNotice | FlagNotice] = [PaymentNotice(user, after.id, status, tokens)]
    if plan.debt or plan.freeze or kind in (DISPUTE_CREATED, DISPUTE_CLOSED):
        figures = await store.balances(conn, user)
        reason = "refund" if kind == REFUNDED else "dispute"
        if after.dispute_status == "lost" and kind == DISPUTE_CLOSED:
            reason = "chargeback"
        notices.append(FlagNotice(user, reason, figures.debt, figures.frozen))
    return _Outcome(status, user, changed=bool(ops), notices=notices)
