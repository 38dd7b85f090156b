"""The ledger's invariants, tested against real PostgreSQL.

Each test ends with the same check `digis ledger verify` runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing.fees import fee_increment, fee_on
from billing.ledger import IdempotencyConflict, InsufficientTokens, Ledger
from storage import ledger as store
from storage.ledger import Op
from tests.money import assert_ledger_consistent, fund, make_user

FEE_BPS = 2000


@pytest.fixture
async def pool(database: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(database, min_size=2, max_size=60)
    yield pool
    await pool.close()


@pytest.fixture
async def ledger(pool: asyncpg.Pool) -> AsyncIterator[Ledger]:
    ledger = Ledger(pool, FEE_BPS)
    await ledger.start()
    yield ledger
    await ledger.stop()
    await assert_ledger_consistent(pool)


async def test_pay_creator_splits_the_fee_rounding_down(ledger: Ledger, pool) -> None:
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 100)
    payment = await ledger.pay_creator(
        payer=fan, creator=creator, amount=7, key="tip-1", kind="tip", reference="s1"
    )
    assert payment.fee == 1 and payment.payer_spendable == 93  # 20% of 7 = 1.4 -> 1
    figures = await store.balances(pool, creator)
    assert figures.earnings == 6
    assert (await store.balances(pool, fan)).spendable == 93


async def test_same_key_same_body_is_a_no_op_other_body_is_refused(ledger: Ledger, pool) -> None:
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 50)
    first = await ledger.pay_creator(
        payer=fan, creator=creator, amount=10, key="k", kind="tip", reference=""
    )
    again = await ledger.pay_creator(
        payer=fan, creator=creator, amount=10, key="k", kind="tip", reference=""
    )
    assert again.replayed and again.transfer_id == first.transfer_id
    with pytest.raises(IdempotencyConflict):
        await ledger.pay_creator(
            payer=fan, creator=creator, amount=11, key="k", kind="tip", reference=""
        )
    assert (await store.balances(pool, fan)).spendable == 40


async def test_insufficient_moves_nothing(ledger: Ledger, pool) -> None:
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 5)
    with pytest.raises(InsufficientTokens) as refused:
        await ledger.pay_creator(
            payer=fan, creator=creator, amount=6, key="big", kind="tip", reference=""
        )
    assert refused.value.spendable == 5
    assert (await store.balances(pool, fan)).spendable == 5
    assert (await store.balances(pool, creator)).earnings == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM transfers WHERE key = 'big'") == 0


async def test_sql_refuses_overdrafts_and_edits_whatever_the_code_path(ledger, pool) -> None:
    fan = await make_user(pool)
    await fund(ledger, fan, 10)
    wallet = (await ledger.accounts_of(fan)).wallet
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE accounts SET debits_posted = debits_posted + 11 WHERE id = $1", wallet
            )
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("UPDATE transfers SET amount = 1000")
        with pytest.raises(asyncpg.RaiseError, match="immutable"):
            await conn.execute("DELETE FROM transfers")


async def test_holds_post_part_release_rest_exactly_once(ledger: Ledger, pool) -> None:
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 100)
    hold = await ledger.hold(fan=fan, amount=60, key="h1", reference="call-1")
    assert hold.status == "ok" and hold.amount == 60
    figures = await store.balances(pool, fan)
    assert (figures.balance, figures.held, figures.spendable) == (100, 60, 40)
    with pytest.raises(InsufficientTokens):  # tips cannot spend held tokens
        await ledger.pay_creator(
            payer=fan, creator=creator, amount=41, key="t", kind="tip", reference=""
        )
    fee = fee_on(25, FEE_BPS)
    post, pay = await ledger.post_hold(
        fan=fan, creator=creator, hold_key="h1", amount=25, fee=fee, key="p1", reference="call-1"
    )
    assert (post.status, pay.status) == ("ok", "ok")
    figures = await store.balances(pool, fan)
    assert (figures.balance, figures.held, figures.spendable) == (75, 0, 75)
    assert (await store.balances(pool, creator)).earnings == 25 - fee
    again = await ledger.post_hold(
        fan=fan, creator=creator, hold_key="h1", amount=25, fee=fee, key="p1", reference="call-1"
    )
    assert [r.status for r in again] == ["exists", "exists"]
    other = await ledger.post_hold(
        fan=fan, creator=creator, hold_key="h1", amount=5, fee=1, key="p2", reference="call-1"
    )
    assert other[0].status == "resolved" and other[1].status == "insufficient"
    assert (await ledger.void_hold(fan=fan, hold_key="h1", key="v1")).status == "resolved"


async def test_balancing_hold_takes_what_is_there(ledger: Ledger, pool) -> None:
    fan = await make_user(pool)
    await fund(ledger, fan, 30)
    hold = await ledger.hold(fan=fan, amount=60, key="b1", reference="c")
    assert (hold.status, hold.amount, hold.debit_spendable) == ("ok", 30, 0)
    empty = await ledger.hold(fan=fan, amount=60, key="b2", reference="c")
    assert empty.status == "insufficient"
    assert (await ledger.void_hold(fan=fan, hold_key="b1", key="b1v")).status == "ok"
    assert (await store.balances(pool, fan)).spendable == 30


async def test_expired_holds_are_released(ledger: Ledger, pool) -> None:
    fan = await make_user(pool)
    await fund(ledger, fan, 20)
    assert (await ledger.hold(fan=fan, amount=20, key="x1", reference="c", timeout=0)).applied
    blocked = await ledger.hold(fan=fan, amount=1, key="x2", reference="c", balancing=False)
    assert blocked.status == "insufficient"
    assert await ledger.release_expired_holds() == 1
    figures = await store.balances(pool, fan)
    assert (figures.held, figures.spendable) == (0, 20)
    assert await ledger.release_expired_holds() == 0


async def test_fifty_concurrent_spends_never_overspend(ledger: Ledger, pool) -> None:
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 100)

    async def spend(i: int) -> bool:
        try:
            await ledger.pay_creator(
                payer=fan, creator=creator, amount=3, key=f"c{i}", kind="tip", reference=""
            )
            return True
        except InsufficientTokens:
            return False

    results = await asyncio.gather(*(spend(i) for i in range(50)))
    assert sum(results) == 33
    assert (await store.balances(pool, fan)).spendable == 1


async def test_fifty_concurrent_transactions_without_the_batcher(ledger: Ledger, pool) -> None:
    """The SQL guard alone holds under truly concurrent transactions."""
    fan, creator = await make_user(pool), await make_user(pool, "creator")
    await fund(ledger, fan, 100)
    wallet = (await ledger.accounts_of(fan)).wallet
    earnings = (await ledger.accounts_of(creator)).earnings

    async def spend(i: int) -> str:
        async with pool.acquire() as conn:
            (result,) = await store.apply(
                conn,
                [Op("transfer", f"raw{i}", debit=wallet, credit=earnings, amount=7, kind="tip")],
            )
            return result.status

    statuses = await asyncio.gather(*(spend(i) for i in range(50)))
    assert statuses.count("ok") == 14 and statuses.count("insufficient") == 36
    assert (await store.balances(pool, fan)).spendable == 2


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["fund", "tip", "transfer", "hold", "post", "void", "replay"]),
            st.integers(min_value=0, max_value=2),
            st.integers(min_value=1, max_value=120),
        ),
        min_size=5,
        max_size=25,
    )
)
async def test_random_operation_sequences_keep_every_invariant(
    ledger: Ledger, pool: asyncpg.Pool, steps: list[tuple[str, int, int]]
) -> None:
    fans = [await make_user(pool) for _ in range(3)]
    creator = await make_user(pool, "creator")
    model = dict.fromkeys(fans, 0)  # spendable tokens per fan, as we expect them
    earned = 0
    holds: list[tuple[str, int, int]] = []  # (key, fan, amount)
    last_payment: tuple[int, int, str] | None = None
    for n, (action, who, amount) in enumerate(steps):
        fan = fans[who]
        key = f"{fan}-{n}-{action}"
        if action == "fund":
            await fund(ledger, fan, amount)
            model[fan] += amount
        elif action in ("tip", "transfer", "replay"):
            if action == "replay" and last_payment is not None:
                payer, value, used_key = last_payment
                payment = await ledger.pay_creator(
                    payer=payer,
                    creator=creator,
                    amount=value,
                    key=used_key,
                    kind="tip",
                    reference="",
                )
                assert payment.replayed
                continue
            try:
                if action == "tip":
                    await ledger.pay_creator(
                        payer=fan,
                        creator=creator,
                        amount=amount,
                        key=key,
                        kind="tip",
                        reference="",
                    )
                    earned += amount - fee_on(amount, FEE_BPS)
                    last_payment = (fan, amount, key)
                else:
                    other = fans[(who + 1) % 3]
                    await ledger.transfer(sender=fan, recipient=other, amount=amount, key=key)
                    model[other] += amount
                model[fan] -= amount
            except InsufficientTokens:
                assert model[fan] < amount
        elif action == "hold":
            result = await ledger.hold(fan=fan, amount=amount, key=key, reference="p")
            if result.status == "ok":
                assert result.amount == min(amount, model[fan])
                model[fan] -= result.amount or 0
                holds.append((key, fan, result.amount or 0))
            else:
                assert model[fan] == 0
        elif action in ("post", "void") and holds:
            hold_key, hold_fan, held = holds.pop(0)
            if action == "post":
                used = max(1, held * amount // 120)
                fee = fee_increment(0, used, FEE_BPS)
                results = await ledger.post_hold(
                    fan=hold_fan,
                    creator=creator,
                    hold_key=hold_key,
                    amount=used,
                    fee=fee,
                    key=key,
                    reference="p",
                )
                assert [r.status for r in results] == ["ok", "ok"]
                model[hold_fan] += held - used
                earned += used - fee
            else:
                assert (await ledger.void_hold(fan=hold_fan, hold_key=hold_key, key=key)).applied
                model[hold_fan] += held
        for user_id, expected in model.items():
            assert (await store.balances(pool, user_id)).spendable == expected >= 0
    assert (await store.balances(pool, creator)).earnings == earned
    await assert_ledger_consistent(pool)
