"""Streams end to end: go live, 200 viewers, chat order, tips, recovery, stats."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from client import Client, RequestError
from protocol import events as ev
from storage import ledger as store
from tests.conftest import RunningServer, quick_user
from tests.money import assert_ledger_consistent


async def test_two_hundred_viewers_receive_every_chat_message_in_order(
    server: RunningServer,
) -> None:
    creator = await quick_user(server, "creator")
    viewers = [await quick_user(server) for _ in range(200)]
    async with contextlib.AsyncExitStack() as stack:
        c = await stack.enter_async_context(server.connect(creator.access_token))
        started = await c.request("stream.start", title="Hello world", category="music")
        session = started.stream.session
        clients = [await stack.enter_async_context(server.connect(v.access_token)) for v in viewers]
        joins = await asyncio.gather(
            *(cl.request("stream.join", session=session) for cl in clients)
        )
        assert all(j.stream.session == session for j in joins)
        assert joins[-1].stream.viewers == 200
        senders = clients[:5]
        expected: list[str] = []
        for round_ in range(4):
            for i, sender in enumerate(senders):
                text = f"message {round_}-{i}"
                await sender.request("chat.send", session=session, text=text)
                expected.append(text)

        async def received(client: Client) -> list[ev.SessionChat]:
            lines: list[ev.SessionChat] = []
            while len(lines) < len(expected):
                event = await client.next_event(ev.SessionChat, timeout=10)
                assert isinstance(event, ev.SessionChat)
                lines.append(event)
            return lines

        everyone = await asyncio.gather(*(received(cl) for cl in [c, *clients]))
        for lines in everyone:
            assert [line.text for line in lines] == expected
            seqs = [line.seq for line in lines]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        counts = await c.next_event(ev.StreamViewers, timeout=5)
        assert isinstance(counts, ev.StreamViewers) and counts.count == 200
        live = await clients[0].request("streams.live")
        assert [(s.session, s.viewers) for s in live.streams] == [(session, 200)]
        totals = await c.request("stream.end", session=session)
        assert totals.chat_messages == 20 and totals.peak_viewers == 200
        assert totals.unique_viewers == 200
        ended = await clients[-1].next_event(ev.StreamEnded)
        assert isinstance(ended, ev.StreamEnded) and ended.totals == totals
    async with server.services.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM streams WHERE id = $1", session)
        assert row["status"] == "ended" and row["chat_messages"] == 20
        assert row["peak_viewers"] == 200 and row["unique_viewers"] == 200
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM stream_viewers WHERE stream_id = $1 AND left_at IS NOT NULL",
                session,
            )
            == 200
        )
        assert (
            await conn.fetchval("SELECT count(*) FROM chat_messages WHERE stream_id = $1", session)
            == 20
        )


async def test_tips_gifts_and_top_tippers(server: RunningServer) -> None:
    creator = await quick_user(server, "creator")
    fan = await quick_user(server, tokens=300)
    late = await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        session = (await c.request("stream.start", title="Tips")).stream.session
        await f.request("stream.join", session=session)
        tip = await f.request(
            "tip.send", session=session, amount=50, message="great!", key="tip-key-1"
        )
        assert tip.balance.spendable == 250
        replay = await f.request(
            "tip.send", session=session, amount=50, message="great!", key="tip-key-1"
        )
        assert replay.transfer == tip.transfer and replay.balance.spendable == 250
        gift = await f.request("gift.send", session=session, gift="diamond")
        assert gift.amount == 100 and gift.balance.spendable == 150
        seen_tip = await c.next_event(ev.SessionTip)
        assert isinstance(seen_tip, ev.SessionTip) and seen_tip.amount == 50
        seen_gift = await c.next_event(ev.SessionGift)
        assert isinstance(seen_gift, ev.SessionGift) and seen_gift.tokens == 100
        async with server.connect(late.access_token) as latecomer:
            joined = await latecomer.request("stream.join", session=session)
            assert [(t.user.id, t.tokens) for t in joined.top_tippers] == [(fan.id, 150)]
            for amount, code in (
                (0, "VALIDATION_ERROR"),
                (-5, "VALIDATION_ERROR"),
                (1, "INSUFFICIENT_TOKENS"),
            ):
                with pytest.raises(RequestError) as refused:
                    await latecomer.request("tip.send", session=session, amount=amount)
                assert refused.value.code == code
            with pytest.raises(RequestError) as self_tip:
                await c.request("tip.send", session=session, amount=1)
            assert self_tip.value.code == "VALIDATION_ERROR"
            with pytest.raises(RequestError) as unknown_gift:
                await f.request("gift.send", session=session, gift="unicorn")
            assert unknown_gift.value.code == "NOT_FOUND"
        figures = await store.balances(server.services.pool, creator.id)
        assert figures.earnings == 40 + 80  # 20% fee on 50 and 100
        totals = await c.request("stream.end", session=session)
        assert (totals.tips_total, totals.gifts_total) == (50, 100)
    await assert_ledger_consistent(server.services.pool)


async def test_stream_errors(server: RunningServer) -> None:
    creator = await quick_user(server, "creator")
    fan = await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        with pytest.raises(RequestError) as fan_live:
            await f.request("stream.start", title="nope")
        assert fan_live.value.code == "CREATOR_ONLY"
        with pytest.raises(RequestError) as unknown:
            await f.request("stream.join", session="does-not-exist")
        assert unknown.value.code == "NOT_FOUND"
        session = (await c.request("stream.start", title="Live")).stream.session
        with pytest.raises(RequestError) as twice:
            await c.request("stream.start", title="Again")
        assert twice.value.code == "INVALID_STATE"
        with pytest.raises(RequestError) as not_joined:
            await f.request("chat.send", session=session, text="hi")
        assert not_joined.value.code == "FORBIDDEN"
        await f.request("stream.join", session=session)
        with pytest.raises(RequestError) as too_long:
            await f.request("chat.send", session=session, text="x" * 501)
        assert too_long.value.code == "VALIDATION_ERROR"
        with pytest.raises(RequestError) as fan_end:
            await f.request("stream.end", session=session)
        assert fan_end.value.code == "FORBIDDEN"
        flood = [f.request("chat.send", session=session, text=f"spam {i}") for i in range(12)]
        results = await asyncio.gather(*flood, return_exceptions=True)
        refused = [r for r in results if isinstance(r, RequestError)]
        assert refused and all(r.code == "RATE_LIMIT_EXCEEDED" for r in refused)
        await f.request("reaction.send", session=session, emoji="fire")
        await f.request("reaction.send", session=session, emoji="fire")
        reactions = await c.next_event(ev.StreamReactions, timeout=5)
        assert isinstance(reactions, ev.StreamReactions) and reactions.counts == {"fire": 2}
        await c.request("stream.end", session=session)


async def test_viewer_recovers_missed_events_after_reconnect(server: RunningServer) -> None:
    creator = await quick_user(server, "creator")
    fan = await quick_user(server)
    async with server.connect(creator.access_token) as c:
        session = (await c.request("stream.start", title="Recovery")).stream.session
        viewer = Client(server.ws_url, fan.access_token, reconnect=False)
        await viewer.open()
        joined = await viewer.request("stream.join", session=session)
        await c.request("chat.send", session=session, text="one")
        first = await viewer.next_event(ev.SessionChat)
        await viewer.close()
        for text in ("two", "three"):
            await c.request("chat.send", session=session, text=text)
        async with server.connect(fan.access_token) as again:
            resumed = await again.request(
                "stream.join", session=session, last_seq=first.seq, epoch=joined.epoch
            )
            assert resumed.recovered and resumed.missed == 2
            replayed = [e.text for e in again.drain_events() if isinstance(e, ev.SessionChat)]
            assert replayed == ["two", "three"]
            fresh = await again.request("stream.join", session=session, last_seq=0, epoch="old")
            assert not fresh.recovered
            assert [line.text for line in fresh.chat] == ["one", "two", "three"]
        await c.request("stream.end", session=session)


async def test_sdk_reconnects_and_resumes_on_its_own(server: RunningServer) -> None:
    creator = await quick_user(server, "creator")
    fan = await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        session = (await c.request("stream.start", title="Reconnect")).stream.session
        await f.request("stream.join", session=session)
        (conn,) = server.services.hub.sockets(fan.id)
        from protocol.codes import CloseCode

        await conn.close(CloseCode.SLOW_CONSUMER, "test: pretend it was slow")
        await c.request("chat.send", session=session, text="after the drop")
        event = await f.next_event(ev.SessionChat, timeout=15)
        assert isinstance(event, ev.SessionChat) and event.text == "after the drop"
        assert f.reconnects == 1
        await c.request("stream.end", session=session)
