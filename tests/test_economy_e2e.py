"""Token economy over the socket: transfers, live balances, history, earnings."""

from __future__ import annotations

import pytest

from client import RequestError
from protocol import events as ev
from tests.conftest import RunningServer, quick_user
from tests.money import assert_ledger_consistent


async def test_transfer_is_idempotent_and_pushes_balances_to_every_socket(
    server: RunningServer,
) -> None:
    alice = await quick_user(server, tokens=100)
    bob = await quick_user(server)
    async with (
        server.connect(alice.access_token) as a,
        server.connect(bob.access_token) as phone,
        server.connect(bob.access_token, encoding="msgpack") as laptop,
    ):
        result = await a.request("tokens.transfer", to=bob.id, amount=30, key="gift-for-bob-1")
        assert (result.amount, result.replayed, result.balance.spendable) == (30, False, 70)
        replay = await a.request("tokens.transfer", to=bob.id, amount=30, key="gift-for-bob-1")
        assert replay.replayed and replay.transfer == result.transfer
        assert replay.balance.spendable == 70
        for client in (phone, laptop):
            pushed = await client.next_event(ev.BalanceUpdated)
            assert isinstance(pushed, ev.BalanceUpdated) and pushed.balance.spendable == 30
        mine = await a.next_event(ev.BalanceUpdated)
        assert isinstance(mine, ev.BalanceUpdated) and mine.balance.spendable == 70
        with pytest.raises(RequestError) as conflict:
            await a.request("tokens.transfer", to=bob.id, amount=31, key="gift-for-bob-1")
        assert conflict.value.code == "VALIDATION_ERROR"
        for fields, code in (
            ({"to": alice.id, "amount": 1, "key": "to-myself-1"}, "VALIDATION_ERROR"),
            ({"to": 999_999, "amount": 1, "key": "to-nobody-1"}, "NOT_FOUND"),
            ({"to": bob.id, "amount": 0, "key": "zero-amount"}, "VALIDATION_ERROR"),
            ({"to": bob.id, "amount": 1.5, "key": "fractional"}, "VALIDATION_ERROR"),
            ({"to": bob.id, "amount": 71, "key": "too-much-1"}, "INSUFFICIENT_TOKENS"),
        ):
            with pytest.raises(RequestError) as refused:
                await a.request("tokens.transfer", **fields)
            assert refused.value.code == code, fields
        assert (await a.request("balance.get")).spendable == 70
    await assert_ledger_consistent(server.services.pool)


async def test_transactions_page_and_filter(server: RunningServer) -> None:
    alice = await quick_user(server, tokens=100)
    bob = await quick_user(server)
    async with server.connect(alice.access_token) as a:
        for i in range(5):
            await a.request("tokens.transfer", to=bob.id, amount=i + 1, key=f"page-test-{i}")
        first = await a.request("transactions.list", limit=3)
        assert [t.amount for t in first.items] == [5, 4, 3]
        assert all(t.direction == "out" and t.counterparty == bob.username for t in first.items)
        second = await a.request("transactions.list", limit=3, before=first.next)
        assert [t.amount for t in second.items] == [2, 1, 100]
        assert second.items[-1].direction == "in" and second.items[-1].kind == "purchase"
        only = await a.request("transactions.list", kind="transfer")
        assert len(only.items) == 5
        with pytest.raises(RequestError) as bad_cursor:
            await a.request("transactions.list", before="not-a-cursor")
        assert bad_cursor.value.code == "VALIDATION_ERROR"


async def test_earnings_summary_by_source(server: RunningServer) -> None:
    fan = await quick_user(server, tokens=1000)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        session = (await c.request("stream.start", title="Earn")).stream.session
        await f.request("stream.join", session=session)
        await f.request("tip.send", session=session, amount=100)
        await f.request("gift.send", session=session, gift="rose")
        summary = await c.request("earnings.summary", days=7)
        assert summary.by_source["tips"] == 80 and summary.by_source["gifts"] == 8
        assert summary.by_source["calls"] == 0
        assert summary.total == 88 == summary.available
        assert len(summary.by_day) == 1 and summary.by_day[0].tokens == 88
        with pytest.raises(RequestError) as fans_cannot:
            await f.request("earnings.summary")
        assert fans_cannot.value.code == "CREATOR_ONLY"
        packages = await f.request("packages.list")
        assert [p.tokens for p in packages.packages] == [100, 500, 1000, 5000]
        gifts = await f.request("gifts.list")
        assert {g.id for g in gifts.gifts} >= {"rose", "diamond"}
        account = await c.request("payout.account.set", account="acct_1TestCreator")
        assert account.account == "acct_1TestCreator"
        with pytest.raises(RequestError) as bad_account:
            await c.request("payout.account.set", account="not-an-account")
        assert bad_account.value.code == "VALIDATION_ERROR"
        await c.request("stream.end", session=session)
    await assert_ledger_consistent(server.services.pool)
