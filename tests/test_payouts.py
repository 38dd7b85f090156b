"""Creator payouts through the Stripe stand-in: limits, success, failure, automatic
runs under the advisory lock, and resuming payouts a crash left pending."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

import pytest

from billing.payouts import (
    AUTO_PAYOUT_LOCK,
    request_payout,
    reserve_payout,
    resume_pending_payouts,
    run_auto_payouts,
)
from billing.stripe_gateway import StripeGateway
from client import RequestError
from protocol.events import PayoutUpdated
from storage import ledger as store
from storage import payments
from tests.conftest import register_user
from tests.money import assert_ledger_consistent, fund, make_user

if TYPE_CHECKING:
    from tests.payments_support import MakePayEnv, PayEnv

pytest_plugins = ["tests.payments_support"]

MINIMUM = 100
VALUE = 5  # DIGIS_TOKEN_VALUE_CENTS default
_keys = itertools.count(1)


@pytest.fixture
async def env(make_pay_env: MakePayEnv) -> PayEnv:
    return await make_pay_env(payout_minimum=MINIMUM)


async def earn(env: PayEnv, creator: int, earnings: int, *, account: bool = True) -> None:
    """Give ``creator`` exactly ``earnings`` tokens of earnings (tips after the 20% fee)."""
    fan = await make_user(env.pool)
    amount = earnings * 10_000 // 8_000
    assert amount - amount * 2000 // 10_000 == earnings
    await fund(env.ledger, fan, amount)
    await env.ledger.pay_creator(
        payer=fan,
        creator=creator,
        amount=amount,
        key=f"tip-{next(_keys)}",
        kind="tip",
        reference="",
    )
    if account:
        await payments.set_payout_account(env.pool, creator, f"acct_{creator}x{next(_keys)}")


async def earnings(env: PayEnv, user: int) -> int:
    return (await store.balances(env.pool, user)).earnings


async def test_fans_cannot_request_payouts(env: PayEnv) -> None:
    fan = await register_user(env.running)
    async with env.running.connect(fan.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("payout.request", tokens=500)
    assert refused.value.code == "CREATOR_ONLY"


async def test_below_minimum_or_without_account_is_refused(env: PayEnv) -> None:
    creator = await register_user(env.running, "creator")
    await earn(env, creator.id, 200, account=False)
    async with env.running.connect(creator.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("payout.request", tokens=MINIMUM - 1)
        assert refused.value.code == "VALIDATION_ERROR"
        with pytest.raises(RequestError) as refused:
            await client.request("payout.request", tokens=150)
        assert refused.value.code == "INVALID_STATE"  # no connected Stripe account yet
    assert await earnings(env, creator.id) == 200
    assert await env.pool.fetchval("SELECT count(*) FROM payouts") == 0
    await assert_ledger_consistent(env.pool)


async def test_above_available_earnings_is_refused_and_nothing_moves(env: PayEnv) -> None:
    creator = await register_user(env.running, "creator")
    await earn(env, creator.id, 200)
    async with env.running.connect(creator.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("payout.request", tokens=201)
    assert refused.value.code == "INSUFFICIENT_TOKENS"
    assert await earnings(env, creator.id) == 200
    assert await env.pool.fetchval("SELECT count(*) FROM payouts") == 0
    assert env.standin.calls("POST", "/v1/transfers") == []
    await assert_ledger_consistent(env.pool)


async def test_successful_payout_transfers_and_settles(env: PayEnv) -> None:
    creator = await register_user(env.running, "creator")
    await earn(env, creator.id, 1000)
    destination = await payments.payout_account(env.pool, creator.id)
    async with env.running.connect(creator.access_token) as client:
        result = await client.request("payout.request", tokens=400)
        update = await client.next_event(PayoutUpdated)
    assert (result.status, result.tokens, result.amount_cents, result.currency) == (
        "paid",
        400,
        400 * VALUE,
        "usd",
    )
    assert isinstance(update, PayoutUpdated) and (update.payout, update.status) == (
        result.payout,
        "paid",
    )
    (call,) = env.standin.calls("POST", "/v1/transfers")
    assert call.idempotency_key == f"payout:{result.payout}"
    assert call.params["amount"] == str(400 * VALUE) and call.params["destination"] == destination
    assert call.params["metadata"]["payout_id"] == result.payout
    row = await payments.get_payout(env.pool, result.payout)
    assert row is not None and row.status == "paid"
    assert row.stripe_transfer_id in env.standin.transfers
    assert await earnings(env, creator.id) == 600
    settled = await env.pool.fetchval(
        "SELECT credits_posted FROM accounts WHERE id = $1", env.ledger.accounts.payouts_settled
    )
    assert settled == 400
    await assert_ledger_consistent(env.pool)


async def test_provider_failure_returns_the_tokens(env: PayEnv) -> None:
    creator = await register_user(env.running, "creator")
    await earn(env, creator.id, 1000)
    env.standin.fail_next("/v1/transfers", status=400, code="balance_insufficient")
    async with env.running.connect(creator.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("payout.request", tokens=1000)
        update = await client.next_event(PayoutUpdated)
    assert refused.value.code == "PAYMENT_ERROR"
    assert isinstance(update, PayoutUpdated) and update.status == "failed"
    row = await payments.get_payout(env.pool, update.payout)
    assert row is not None and row.status == "failed" and row.failure_message
    assert await earnings(env, creator.id) == 1000
    await assert_ledger_consistent(env.pool)


async def test_auto_payouts_run_once_under_the_advisory_lock(env: PayEnv) -> None:
    due = [await make_user(env.pool, "creator") for _ in range(2)]
    below, no_account = await make_user(env.pool, "creator"), await make_user(env.pool, "creator")
    await earn(env, due[0], 1000)
    await earn(env, due[1], 480)
    await earn(env, below, MINIMUM - 4)
    await earn(env, no_account, 800, account=False)

    async def run() -> object:
        return await run_auto_payouts(
            env.ledger, env.gateway, minimum=MINIMUM, token_value_cents=VALUE
        )

    async with env.pool.acquire() as holder:
        await holder.execute("SELECT pg_advisory_lock($1)", AUTO_PAYOUT_LOCK)
        try:
            blocked = await run_auto_payouts(
                env.ledger, env.gateway, minimum=MINIMUM, token_value_cents=VALUE
            )
        finally:
            await holder.execute("SELECT pg_advisory_unlock($1)", AUTO_PAYOUT_LOCK)
    assert not blocked.ran and blocked.payouts == []
    runs = await asyncio.gather(run(), run(), run())
    made = [p for r in runs for p in r.payouts]  # type: ignore[attr-defined]
    assert sorted((p.user_id, p.tokens, p.status) for p in made) == [
        (due[0], 1000, "paid"),
        (due[1], 480, "paid"),
    ]
    again = await run()
    assert again.ran and again.payouts == []  # type: ignore[attr-defined]
    assert len(env.standin.calls("POST", "/v1/transfers")) == 2
    rows = await env.pool.fetch("SELECT user_id, automatic FROM payouts ORDER BY user_id")
    assert [(r["user_id"], r["automatic"]) for r in rows] == [(due[0], True), (due[1], True)]
    assert [await earnings(env, u) for u in (*due, below, no_account)] == [0, 0, 96, 800]
    await assert_ledger_consistent(env.pool)


async def test_resume_finishes_a_payout_stuck_before_stripe(env: PayEnv) -> None:
    creator = await make_user(env.pool, "creator")
    await earn(env, creator, 500)
    destination = await payments.payout_account(env.pool, creator)
    assert destination is not None
    stuck = await reserve_payout(
        env.ledger, user_id=creator, tokens=300, amount_cents=1500, destination=destination
    )
    assert await earnings(env, creator) == 200
    assert await resume_pending_payouts(env.ledger, env.gateway, older_than=3600) == []
    (outcome,) = await resume_pending_payouts(env.ledger, env.gateway, older_than=0)
    assert (outcome.payout, outcome.status) == (stuck.id, "paid")
    assert await resume_pending_payouts(env.ledger, env.gateway, older_than=0) == []
    (call,) = env.standin.calls("POST", "/v1/transfers")
    assert call.idempotency_key == f"payout:{stuck.id}"
    assert await earnings(env, creator) == 200
    await assert_ledger_consistent(env.pool)


async def test_unknown_outcome_stays_pending_and_resume_never_pays_twice(
    env: PayEnv, quiet_gateway: StripeGateway
) -> None:
    creator = await make_user(env.pool, "creator")
    await earn(env, creator, 500)
    env.standin.fail_next("/v1/transfers", status=500, type="api_error", after_effect=True)
    outcome = await request_payout(
        env.ledger,
        quiet_gateway,
        user_id=creator,
        tokens=500,
        minimum=MINIMUM,
        token_value_cents=VALUE,
    )
    assert outcome.status == "pending"
    assert len(env.standin.transfers) == 1  # Stripe did it; we did not hear
    assert await earnings(env, creator) == 0
    (resumed,) = await resume_pending_payouts(env.ledger, quiet_gateway, older_than=0)
    assert (resumed.payout, resumed.status) == (outcome.payout, "paid")
    assert len(env.standin.transfers) == 1
    assert len(env.standin.calls("POST", "/v1/transfers")) == 1
    row = await payments.get_payout(env.pool, outcome.payout)
    assert row is not None and row.stripe_transfer_id in env.standin.transfers
    await assert_ledger_consistent(env.pool)


async def test_retry_with_the_same_key_returns_the_same_transfer(
    env: PayEnv, quiet_gateway: StripeGateway
) -> None:
    fields = {
        "amount_cents": 700,
        "currency": "usd",
        "destination": "acct_1Same",
        "idempotency_key": "payout:same",
        "metadata": {"payout_id": "same"},
    }
    first = await quiet_gateway.create_transfer(**fields)  # type: ignore[arg-type]
    again = await quiet_gateway.create_transfer(**fields)  # type: ignore[arg-type]
    assert first == again and len(env.standin.transfers) == 1
    assert await quiet_gateway.find_transfer("payout:same") == first
    assert await quiet_gateway.find_transfer("payout:other") is None
