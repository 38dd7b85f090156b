"""The whole token economy under random operation sequences (hypothesis).

Purchases (with duplicated webhooks), refunds, tips, transfers, call holds
with posts and voids, and creator payouts (some refused by the provider) are
interleaved at random against real PostgreSQL and the Stripe stand-in. After
every step the ledger must verify: debits equal credits, every balance equals
its transfers, no spendable balance below zero, every purchase credited once.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from billing.fees import fee_increment
from billing.ledger import InsufficientTokens, Ledger
from billing.payouts import PayoutRefused, request_payout
from billing.purchases import process_event, start_purchase
from billing.stripe_gateway import StripeGateway, parse_event
from loadtest.stripe_standin import SECRET_KEY, StripeStandin, intent_event, new_id, refund_event
from storage import ledger as store
from storage import payments
from tests.money import assert_ledger_consistent, make_user

PACKAGES = ["tokens_100", "tokens_500"]
_keys = itertools.count()


@dataclass
class Bought:
    user: int
    intent: str
    charge: str
    amount: int
    refunded: int = 0


@pytest.fixture
async def economy(database: str) -> AsyncIterator[tuple[Ledger, StripeGateway, StripeStandin]]:
    pool = await asyncpg.create_pool(database, min_size=1, max_size=10)
    ledger = Ledger(pool, 2000)
    await ledger.start()
    standin = StripeStandin()
    await standin.start()
    gateway = StripeGateway(SECRET_KEY, standin.url, max_network_retries=0)
    yield ledger, gateway, standin
    await gateway.close()
    await standin.close()
    await ledger.stop()
    await pool.close()


STEP = st.tuples(
    st.sampled_from(["buy", "refund", "tip", "transfer", "hold", "post", "void", "payout"]),
    st.integers(min_value=0, max_value=5),
    st.integers(min_value=1, max_value=700),
    st.booleans(),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEP, min_size=4, max_size=16))
async def test_random_economy_keeps_the_ledger_whole(
    economy: tuple[Ledger, StripeGateway, StripeStandin], steps: list[tuple[str, int, int, bool]]
) -> None:
    ledger, gateway, standin = economy
    pool = ledger.pool
    fans = [await make_user(pool) for _ in range(3)]
    creators = [await make_user(pool, "creator") for _ in range(2)]
    for creator in creators:
        await payments.set_payout_account(pool, creator, f"acct_{creator}x{next(_keys)}")
    bought: list[Bought] = []
    holds: list[tuple[str, int, int]] = []
    for action, pick, amount, flag in steps:
        event(action)
        fan = fans[pick % 3]
        creator = creators[pick % 2]
        key = f"p{next(_keys)}"
        if action == "buy":
            started = await start_purchase(
                ledger, gateway, user_id=fan, package_id=PACKAGES[pick % 2]
            )
            charge = new_id("ch")
            metadata = standin.intents[started.payment_intent]["metadata"]
            succeeded = intent_event(
                "payment_intent.succeeded",
                intent=started.payment_intent,
                amount=started.amount_cents,
                metadata=metadata,
                charge=charge,
            )
            for _ in range(2 if flag else 1):  # Stripe may deliver twice
                await process_event(ledger, parse_event(succeeded))
            bought.append(Bought(fan, started.payment_intent, charge, started.amount_cents))
        elif action == "refund" and bought:
            purchase = bought[pick % len(bought)]
            purchase.refunded = min(purchase.amount, purchase.refunded + amount * 10)
            refunded = refund_event(
                intent=purchase.intent,
                charge=purchase.charge,
                refunded=purchase.refunded,
                amount=purchase.amount,
            )
            await process_event(ledger, parse_event(refunded))
        elif action in ("tip", "transfer"):
            try:
                if action == "tip":
                    await ledger.pay_creator(
                        payer=fan, creator=creator, amount=amount, key=key, kind="tip", reference=""
                    )
                else:
                    other = fans[(pick + 1) % 3]
                    await ledger.transfer(sender=fan, recipient=other, amount=amount, key=key)
            except InsufficientTokens:
                pass
        elif action == "hold":
            result = await ledger.hold(fan=fan, amount=amount, key=key, reference="call")
            if result.status == "ok" and result.amount:
                holds.append((key, fan, result.amount))
        elif action in ("post", "void") and holds:
            hold_key, hold_fan, held = holds.pop(0)
            if action == "post":
                used = max(1, held * amount // 700)
                await ledger.post_hold(
                    fan=hold_fan,
                    creator=creator,
                    hold_key=hold_key,
                    amount=used,
                    fee=fee_increment(0, used, 2000),
                    key=key,
                    reference="call",
                )
            else:
                await ledger.void_hold(fan=hold_fan, hold_key=hold_key, key=key)
        elif action == "payout":
            available = (await store.balances(pool, creator)).earnings
            if flag:
                standin.fail_next("/v1/transfers")
            with contextlib.suppress(InsufficientTokens, PayoutRefused):
                await request_payout(
                    ledger,
                    gateway,
                    user_id=creator,
                    tokens=max(1, min(amount, available or 1)),
                    minimum=1,
                    token_value_cents=5,
                )
        await assert_ledger_consistent(pool)
    for user in fans + creators:
        figures = await store.balances(pool, user)
        assert figures.spendable >= 0 and figures.earnings >= 0
