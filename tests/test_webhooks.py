"""Stripe webhooks: signatures, exactly-once effects, refunds, disputes, any order.

Events are the copied Stripe fixtures with our ids, signed as Stripe signs
them. Every test ends with the ledger verify check.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.purchases import StartedPurchase, process_event, start_purchase
from billing.stripe_gateway import parse_event
from loadtest.stripe_standin import (
    WEBHOOK_SECRET,
    dispute_event,
    intent_event,
    new_id,
    refund_event,
    sign,
    with_new_id,
)
from protocol.events import AccountFlagged, BalanceUpdated, PaymentUpdated
from storage import ledger as store
from storage import payments
from tests.conftest import register_user
from tests.money import assert_ledger_consistent, fund, make_user

if TYPE_CHECKING:
    from tests.payments_support import MakePayEnv, PayEnv

pytest_plugins = ["tests.payments_support"]

T, A = 100, 999  # tokens_100 costs 999 cents


async def buy(env: PayEnv, user: int) -> StartedPurchase:
    return await start_purchase(env.ledger, env.gateway, user_id=user, package_id="tokens_100")


def succeeded(p: StartedPurchase, user: int, charge: str) -> dict[str, Any]:
    metadata = {"purchase_id": p.purchase, "user_id": str(user), "package": "tokens_100"}
    metadata["tokens"] = str(p.tokens)
    return intent_event(
        "payment_intent.succeeded",
        intent=p.payment_intent,
        amount=p.amount_cents,
        metadata=metadata,
        charge=charge,
    )


async def figures(env: PayEnv, user: int) -> tuple[int, int, int]:
    """(spendable, frozen, debt) of the user."""
    b = await store.balances(env.pool, user)
    return b.spendable, b.frozen, b.debt


async def flag(env: PayEnv, user: int) -> str | None:
    value = await env.pool.fetchval("SELECT payment_flag FROM users WHERE id = $1", user)
    return None if value is None else str(value)


async def deliver(env: PayEnv, event: dict[str, Any]) -> str:
    """Process an event as the webhook route does (minus HTTP), returning its outcome."""
    lookup = env.gateway.retrieve_payment_intent
    return await process_event(env.ledger, parse_event(event), lookup=lookup)


# --- delivery and signatures --------------------------------------------------------------


async def test_succeeded_credits_once_and_duplicates_are_acknowledged(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    async with pay_env.running.connect(fan.access_token) as client:
        result = await client.request("tokens.purchase", package="tokens_100")
        p = StartedPurchase(
            result.purchase, result.payment_intent, "", result.tokens, result.amount_cents, "usd"
        )
        event = succeeded(p, fan.id, new_id("ch"))
        status, body = await pay_env.webhook(event)
        assert (status, body["outcome"]) == (200, "succeeded")
        update = await client.next_event(PaymentUpdated)
        assert isinstance(update, PaymentUpdated)
        assert (update.purchase, update.status, update.tokens) == (p.purchase, "succeeded", 100)
        pushed = await client.next_event(BalanceUpdated)
        assert isinstance(pushed, BalanceUpdated) and pushed.balance.spendable == 100
        for _ in range(2):
            status, body = await pay_env.webhook(event)
            assert (status, body["outcome"]) == (200, "duplicate")
    assert await figures(pay_env, fan.id) == (100, 0, 0)
    key = f"purchase:{p.payment_intent}"
    assert await pay_env.pool.fetchval("SELECT count(*) FROM transfers WHERE key = $1", key) == 1
    assert await pay_env.pool.fetchval("SELECT count(*) FROM stripe_events") == 1
    await assert_ledger_consistent(pay_env.pool)


async def test_concurrent_deliveries_of_one_event_apply_once(pay_env: PayEnv) -> None:
    fan = await make_user(pay_env.pool)
    p = await buy(pay_env, fan)
    event = succeeded(p, fan, new_id("ch"))
    replies = await asyncio.gather(*(pay_env.webhook(event) for _ in range(6)))
    outcomes = sorted(body["outcome"] for _, body in replies)
    assert outcomes == ["duplicate"] * 5 + ["succeeded"]
    assert await figures(pay_env, fan) == (100, 0, 0)
    await assert_ledger_consistent(pay_env.pool)


async def test_succeeded_before_the_intent_is_known_locally(pay_env: PayEnv) -> None:
    fan = await make_user(pay_env.pool)
    metadata = {"purchase_id": "pur_elsewhere", "user_id": str(fan), "package": "tokens_500"}
    metadata["tokens"] = "500"
    pi = new_id("pi")
    event = intent_event("payment_intent.succeeded", intent=pi, amount=4499, metadata=metadata)
    status, body = await pay_env.webhook(event)
    assert (status, body["outcome"]) == (200, "succeeded")
    row = await payments.get_purchase(pay_env.pool, "pur_elsewhere")
    assert row is not None and (row.payment_intent_id, row.tokens, row.paid) == (pi, 500, True)
    assert await figures(pay_env, fan) == (500, 0, 0)
    # a purchase whose intent id was never stored (crash after Stripe answered) is linked
    await payments.insert_purchase(
        pay_env.pool,
        purchase_id="pur_orphan",
        user_id=fan,
        package_id="tokens_100",
        tokens=100,
        amount_cents=999,
        currency="usd",
    )
    metadata = {"purchase_id": "pur_orphan", "user_id": str(fan), "package": "tokens_100"}
    metadata["tokens"] = "100"
    pi2 = new_id("pi")
    event = intent_event("payment_intent.succeeded", intent=pi2, amount=999, metadata=metadata)
    assert (await pay_env.webhook(event))[0] == 200
    row = await payments.get_purchase(pay_env.pool, "pur_orphan")
    assert row is not None and (row.payment_intent_id, row.status) == (pi2, "succeeded")
    assert await figures(pay_env, fan) == (600, 0, 0)
    await assert_ledger_consistent(pay_env.pool)


async def test_succeeded_without_metadata_is_recorded_and_acknowledged(pay_env: PayEnv) -> None:
    event = intent_event("payment_intent.succeeded", intent=new_id("pi"))
    status, body = await pay_env.webhook(event)
    assert status == 200 and body["outcome"].startswith("unprocessable")
    assert await payments.event_outcome(pay_env.pool, event["id"]) == body["outcome"]
    assert await pay_env.pool.fetchval("SELECT count(*) FROM transfers") == 0
    await assert_ledger_consistent(pay_env.pool)


async def test_bad_missing_or_stale_signatures_and_malformed_bodies_change_nothing(
    pay_env: PayEnv,
) -> None:
    fan = await make_user(pay_env.pool)
    p = await buy(pay_env, fan)
    event = succeeded(p, fan, new_id("ch"))
    payload = json.dumps(event).encode()
    stale = int(time.time()) - 3600
    attempts = [
        await pay_env.webhook(event, secret="whsec_wrong"),
        await pay_env.webhook(event, signature=""),
        await pay_env.webhook(event, signature="t=1,v1=deadbeef"),
        await pay_env.webhook(event, timestamp=stale),
        await pay_env.webhook(payload + b" ", signature=sign(payload, WEBHOOK_SECRET)),
        await pay_env.webhook(b"{not json"),
        await pay_env.webhook(b'{"object": "list", "data": []}'),
        await pay_env.webhook(b"[1, 2]"),
        await pay_env.webhook(b'{"object": "event", "id": "evt_1", "type": "x", "data": 3}'),
    ]
    for status, body in attempts:
        assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR", body
    assert await pay_env.pool.fetchval("SELECT count(*) FROM stripe_events") == 0
    assert await figures(pay_env, fan) == (0, 0, 0)
    assert (await pay_env.webhook(event))[0] == 200  # the genuine delivery still works
    await assert_ledger_consistent(pay_env.pool)


async def test_without_a_webhook_secret_the_endpoint_is_unavailable(
    make_pay_env: MakePayEnv,
) -> None:
    env = await make_pay_env(stripe_webhook_secret=None)
    status, body = await env.webhook(intent_event("payment_intent.succeeded", intent="pi_x"))
    assert status == 503 and body["error"]["code"] == "TEMPORARILY_UNAVAILABLE"


async def test_unknown_event_types_are_recorded_and_acknowledged(pay_env: PayEnv) -> None:
    event = {
        "object": "event",
        "id": new_id("evt"),
        "type": "customer.created",
        "data": {"object": {"object": "customer", "id": "cus_1"}},
    }
    status, body = await pay_env.webhook(event)
    assert (status, body["outcome"]) == (200, "ignored: unhandled type")
    assert (await pay_env.webhook(event))[1]["outcome"] == "duplicate"


async def test_failed_then_succeeded_and_late_failure_is_ignored(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    p = await buy(pay_env, fan.id)
    failed = intent_event("payment_intent.payment_failed", intent=p.payment_intent, amount=999)
    async with pay_env.running.connect(fan.access_token) as client:
        assert (await pay_env.webhook(failed))[1]["outcome"] == "failed"
        update = await client.next_event(PaymentUpdated)
        assert isinstance(update, PaymentUpdated) and update.status == "failed"
        assert update.message == "Your card was declined."
    await pay_env.webhook(succeeded(p, fan.id, new_id("ch")))
    await pay_env.webhook(with_new_id(failed))
    row = await payments.get_purchase(pay_env.pool, p.purchase)
    assert row is not None and row.status == "succeeded"
    assert await figures(pay_env, fan.id) == (100, 0, 0)
    await assert_ledger_consistent(pay_env.pool)


# --- refunds and disputes --------------------------------------------------------------------


async def test_refund_after_spending_becomes_debt_and_never_a_negative_balance(
    pay_env: PayEnv,
) -> None:
    fan = await register_user(pay_env.running)
    friend = await make_user(pay_env.pool)
    p = await buy(pay_env, fan.id)
    charge = new_id("ch")
    await pay_env.webhook(succeeded(p, fan.id, charge))
    await pay_env.ledger.transfer(sender=fan.id, recipient=friend, amount=70, key="spend")
    async with pay_env.running.connect(fan.access_token) as client:
        refund = refund_event(intent=p.payment_intent, charge=charge, refunded=A, amount=A)
        status, body = await pay_env.webhook(refund)
        assert (status, body["outcome"]) == (200, "refunded")
        flagged = await client.next_event(AccountFlagged)
        assert isinstance(flagged, AccountFlagged)
        assert (flagged.reason, flagged.debt, flagged.frozen) == ("refund", 70, 0)
    assert await figures(pay_env, fan.id) == (0, 0, 70)
    assert await flag(pay_env, fan.id) == "debt"
    rows = await pay_env.pool.fetch(
        "SELECT key, amount FROM transfers WHERE key LIKE 'refund:%' ORDER BY key"
    )
    assert [(r["key"], r["amount"]) for r in rows] == [
        (f"refund:{charge}:{A}", 30),
        (f"refund:{charge}:{A}:debt", 70),
    ]
    await assert_ledger_consistent(pay_env.pool)


async def test_partial_then_full_refund_claws_only_the_new_share(pay_env: PayEnv) -> None:
    fan = await make_user(pay_env.pool)
    p = await buy(pay_env, fan)
    charge = new_id("ch")
    await deliver(pay_env, succeeded(p, fan, charge))
    partial = refund_event(intent=p.payment_intent, charge=charge, refunded=500, amount=A)
    assert await deliver(pay_env, partial) == "partially_refunded"
    assert await figures(pay_env, fan) == (50, 0, 0)  # floor(100 * 500 / 999) = 50
    await deliver(pay_env, refund_event(intent=p.payment_intent, charge=charge, refunded=A))
    assert await figures(pay_env, fan) == (0, 0, 0)
    assert await deliver(pay_env, with_new_id(partial)) == "refunded"  # stale: nothing moves
    row = await payments.get_purchase(pay_env.pool, p.purchase)
    assert row is not None and (row.refunded_cents, row.tokens_clawed) == (A, 100)
    assert await flag(pay_env, fan) is None
    await assert_ledger_consistent(pay_env.pool)


async def test_refund_share_rounds_for_the_user(pay_env: PayEnv) -> None:
    fan = await make_user(pay_env.pool)
    p = await buy(pay_env, fan)
    charge = new_id("ch")
    await deliver(pay_env, succeeded(p, fan, charge))
    await deliver(pay_env, refund_event(intent=p.payment_intent, charge=charge, refunded=1))
    await deliver(pay_env, refund_event(intent=p.payment_intent, charge=charge, refunded=19))
    assert await figures(pay_env, fan) == (99, 0, 0)  # floor(100 * 19 / 999) = 1
    await assert_ledger_consistent(pay_env.pool)


async def test_dispute_freezes_then_won_releases(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    p = await buy(pay_env, fan.id)
    charge, dispute = new_id("ch"), new_id("dp")
    await deliver(pay_env, succeeded(p, fan.id, charge))
    async with pay_env.running.connect(fan.access_token) as client:
        created = dispute_event(intent=p.payment_intent, charge=charge, dispute=dispute, amount=A)
        assert (await pay_env.webhook(created))[1]["outcome"] == "disputed"
        flagged = await client.next_event(AccountFlagged)
        assert isinstance(flagged, AccountFlagged) and flagged.frozen == 100
    assert await figures(pay_env, fan.id) == (0, 100, 0)
    assert await flag(pay_env, fan.id) == "dispute"
    won = dispute_event(
        intent=p.payment_intent, charge=charge, dispute=dispute, status="won", amount=A
    )
    assert await deliver(pay_env, won) == "dispute_won"
    assert await figures(pay_env, fan.id) == (100, 0, 0)
    await assert_ledger_consistent(pay_env.pool)


async def test_dispute_lost_books_frozen_tokens_and_debt_for_the_shortfall(
    pay_env: PayEnv,
) -> None:
    fan, friend = await make_user(pay_env.pool), await make_user(pay_env.pool)
    p = await buy(pay_env, fan)
    charge, dispute = new_id("ch"), new_id("dp")
    await deliver(pay_env, succeeded(p, fan, charge))
    await pay_env.ledger.transfer(sender=fan, recipient=friend, amount=40, key="spend")
    await deliver(pay_env, dispute_event(intent=p.payment_intent, charge=charge, dispute=dispute))
    assert await figures(pay_env, fan) == (0, 60, 0)
    lost = dispute_event(intent=p.payment_intent, charge=charge, dispute=dispute, status="lost")
    assert await deliver(pay_env, lost) == "dispute_lost"
    assert await figures(pay_env, fan) == (0, 0, 40)
    assert await flag(pay_env, fan) == "debt"
    await assert_ledger_consistent(pay_env.pool)


async def test_refund_of_an_intent_unknown_here_is_resolved_through_stripe(
    pay_env: PayEnv,
) -> None:
    fan = await make_user(pay_env.pool)
    intent = await pay_env.gateway.create_payment_intent(
        purchase_id="pur_remote",
        user_id=fan,
        package="tokens_100",
        tokens=100,
        amount_cents=999,
        currency="usd",
    )
    charge = new_id("ch")
    refund = refund_event(intent=intent.id, charge=charge, refunded=500, amount=A)
    assert await deliver(pay_env, refund) == "partially_refunded"
    assert await figures(pay_env, fan) == (50, 0, 0)
    p = StartedPurchase("pur_remote", intent.id, "", 100, 999, "usd")
    assert await deliver(pay_env, succeeded(p, fan, charge)) == "partially_refunded"
    assert await figures(pay_env, fan) == (50, 0, 0)
    stranger = refund_event(intent=new_id("pi"), charge=new_id("ch"), refunded=5)
    assert (await deliver(pay_env, stranger)).startswith("unprocessable")
    await assert_ledger_consistent(pay_env.pool)


# --- any order, same ledger ----------------------------------------------------------------


def expected(order: Sequence[str], wallet_before: int) -> tuple[int, int, int]:
    """(spendable, frozen, debt) after ``order``, worked out from the final facts alone."""
    paid = any(name != "F" for name in order)
    refunded = max([0] + [{"R1": 400, "R2": A}[n] for n in order if n.startswith("R")])
    closed = [n for n in order if n in ("DW", "DL")]
    dispute = (
        {"DW": "won", "DL": "lost"}[closed[0]] if closed else "open" if "DC" in order else None
    )
    back = T * refunded // A
    stake = min(T, T - back) if dispute in ("open", "lost") else 0
    owed = back + (stake if dispute == "lost" else 0)
    pool = wallet_before + (T if paid else 0)
    taken = min(owed, pool)
    frozen = min(stake if dispute == "open" else 0, pool - taken)
    return pool - taken - frozen, frozen, owed - taken


async def run_order(
    env: PayEnv, order: Sequence[str], *, funded: int = 0, spent_after_paid: int = 0
) -> tuple[int, int, int]:
    """A fresh user and purchase; deliver ``order`` (``S`` first if spending after it)."""
    fan, friend = await make_user(env.pool), await make_user(env.pool)
    if funded:
        await fund(env.ledger, fan, funded)
    purchase_id, pi, charge, dispute = (new_id(k) for k in ("pur", "pi", "ch", "dp"))
    await payments.insert_purchase(
        env.pool,
        purchase_id=purchase_id,
        user_id=fan,
        package_id="tokens_100",
        tokens=T,
        amount_cents=A,
        currency="usd",
        payment_intent_id=pi,
    )
    p = StartedPurchase(purchase_id, pi, "", T, A, "usd")
    events = {
        "S": succeeded(p, fan, charge),
        "F": intent_event("payment_intent.payment_failed", intent=pi, amount=A),
        "R1": refund_event(intent=pi, charge=charge, refunded=400, amount=A),
        "R2": refund_event(intent=pi, charge=charge, refunded=A, amount=A),
        "DC": dispute_event(intent=pi, charge=charge, dispute=dispute, amount=A),
        "DW": dispute_event(intent=pi, charge=charge, dispute=dispute, status="won", amount=A),
        "DL": dispute_event(intent=pi, charge=charge, dispute=dispute, status="lost", amount=A),
    }
    for n, name in enumerate(order):
        await deliver(env, events[name])
        if n == 0 and spent_after_paid:
            await env.ledger.transfer(sender=fan, recipient=friend, amount=spent_after_paid, key=pi)
    spendable, frozen, debt = await figures(env, fan)
    assert spendable >= 0
    if debt:
        assert await flag(env, fan) == "debt"
    return spendable, frozen, debt


@pytest.mark.parametrize(
    "events",
    [("R1", "DC", "DL", "R1"), ("R1", "R2", "DC", "DW"), ("R1", "DC", "R2", "R1")],
    ids=["refund-dispute-lost", "refunds-dispute-won", "dispute-open-refunds"],
)
async def test_every_order_after_spending_gives_the_same_ledger(
    pay_env: PayEnv, events: tuple[str, ...]
) -> None:
    outcomes = set()
    for order in set(itertools.permutations(events)):
        outcomes.add(await run_order(pay_env, ("S", *order), spent_after_paid=70))
    assert outcomes == {expected(("S", *events), -70)}
    await assert_ledger_consistent(pay_env.pool)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    order=st.lists(st.sampled_from(["S", "F", "R1", "R2", "DC", "CLOSED"]), max_size=8),
    closed=st.sampled_from(["DW", "DL"]),
    funded=st.integers(min_value=0, max_value=60),
)
async def test_random_orders_and_duplicates_match_the_final_facts(
    pay_env: PayEnv, order: list[str], closed: str, funded: int
) -> None:
    order = [closed if name == "CLOSED" else name for name in order]
    assert await run_order(pay_env, order, funded=funded) == expected(order, funded)
    await assert_ledger_consistent(pay_env.pool)
