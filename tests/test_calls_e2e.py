"""Calls end to end over real sockets: invite, accept, meter, tip, end, history."""

from __future__ import annotations

import pytest

from billing.fees import fee_on
from client import Client, RequestError
from protocol import events as ev
from storage import ledger as store
from storage import sessions
from tests.conftest import RunningServer, quick_user, ring, wait_closed
from tests.money import assert_ledger_consistent


async def test_a_call_bills_and_everyone_agrees_on_the_totals(server: RunningServer) -> None:
    fan = await quick_user(server, tokens=500)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        rates = await c.request("creator.rates.set", video=60, voice=30)
        assert (rates.video, rates.voice) == (60, 30)
        invite_id = await ring(f, c, creator.id)
        joined = await c.request("call.accept", invite=invite_id)
        started = await f.next_event(ev.CallStarted)
        assert isinstance(started, ev.CallStarted)
        assert started.call.session == joined.session and joined.rate_per_minute == 60
        assert joined.media == [] and "AGORA" in joined.media_error
        fan_tick = await f.next_event(ev.CallTick, timeout=8)
        creator_tick = await c.next_event(ev.CallTick, timeout=8)
        assert fan_tick.remaining is not None and fan_tick.earned is None
        assert creator_tick.earned is not None and creator_tick.remaining is None
        assert fan_tick.charged >= 4
        balance = await f.request("balance.get")
        assert balance.held > 0
        totals = await f.request("call.end", session=joined.session)
        ended = await c.next_event(ev.CallEnded)
        assert isinstance(ended, ev.CallEnded) and ended.reason == "hangup"
        assert ended.ended_by == fan.id and ended.totals == totals
        assert totals.tokens_charged == totals.duration_seconds  # 60/min = 1 per second
        assert totals.platform_fee == fee_on(totals.tokens_charged, 2000)
        assert totals.creator_earned == totals.tokens_charged - totals.platform_fee
        row = await sessions.get_call(server.services.pool, joined.session)
        assert row is not None and row.status == "ended"
        assert (row.billed_seconds, row.tokens_charged, row.platform_fee) == (
            totals.duration_seconds,
            totals.tokens_charged,
            totals.platform_fee,
        )
        fan_figures = await store.balances(server.services.pool, fan.id)
        assert (fan_figures.balance, fan_figures.held) == (500 - totals.tokens_charged, 0)
        creator_figures = await store.balances(server.services.pool, creator.id)
        assert creator_figures.earnings == totals.creator_earned
        history = await c.request("calls.history")
        assert history.items[0].session == joined.session
        assert history.items[0].tokens_charged == totals.tokens_charged
        with pytest.raises(RequestError) as again:
            await c.request("call.end", session=joined.session)
        assert again.value.code == "INVALID_STATE"
    await assert_ledger_consistent(server.services.pool)


async def test_invitation_expiry_cancel_decline(make_server) -> None:
    server = await make_server(call_invite_timeout=1.0)
    fan = await quick_user(server, tokens=100)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        invite_id = await ring(f, c, creator.id)
        for client in (f, c):
            ended = await client.next_event(ev.CallInviteEnded, timeout=5)
            assert isinstance(ended, ev.CallInviteEnded)
            assert (ended.invite, ended.reason) == (invite_id, "expired")
        with pytest.raises(RequestError) as late:
            await c.request("call.accept", invite=invite_id)
        assert late.value.code == "INVALID_STATE" and "expired" in late.value.message
        invite_id = await ring(f, c, creator.id)
        await f.request("call.cancel", invite=invite_id)
        for client in (f, c):
            assert (await client.next_event(ev.CallInviteEnded)).reason == "cancelled"
        invite_id = await ring(f, c, creator.id)
        await c.request("call.decline", invite=invite_id)
        for client in (f, c):
            assert (await client.next_event(ev.CallInviteEnded)).reason == "declined"


async def test_call_request_errors_change_nothing(server: RunningServer) -> None:
    fan = await quick_user(server, tokens=100)
    broke = await quick_user(server)
    creator = await quick_user(server, "creator")
    offline = await quick_user(server, "creator")
    async with (
        server.connect(creator.access_token) as c,
        server.connect(fan.access_token) as f,
        server.connect(broke.access_token) as b,
    ):
        cases = [
            (f, "call.invite", {"creator": broke.id}, "NOT_FOUND"),
            (f, "call.invite", {"creator": offline.id}, "CREATOR_UNAVAILABLE"),
            (f, "call.invite", {"creator": fan.id}, "VALIDATION_ERROR"),
            (b, "call.invite", {"creator": creator.id}, "INSUFFICIENT_TOKENS"),
            (f, "call.accept", {"invite": "nope"}, "CREATOR_ONLY"),
            (c, "call.accept", {"invite": "nope"}, "NOT_FOUND"),
            (f, "call.end", {"session": "nope"}, "NOT_FOUND"),
            (f, "creator.rates.set", {"video": 1, "voice": 1}, "CREATOR_ONLY"),
        ]
        for client, kind, fields, code in cases:
            with pytest.raises(RequestError) as refused:
                await client.request(kind, **fields)
            assert refused.value.code == code, (kind, fields)
        await c.request("creator.availability.set", status="busy")
        with pytest.raises(RequestError) as busy:
            await f.request("call.invite", creator=creator.id)
        assert busy.value.code == "CREATOR_UNAVAILABLE" and "busy" in busy.value.message
        await c.request("creator.availability.set", status="online")
        invite_id = await ring(f, c, creator.id)
        with pytest.raises(RequestError) as twice:
            await f.request("call.invite", creator=creator.id)
        assert twice.value.code == "INVALID_STATE"
        joined = await c.request("call.accept", invite=invite_id)
        with pytest.raises(RequestError) as accepted_twice:
            await c.request("call.accept", invite=invite_id)
        assert accepted_twice.value.code == "INVALID_STATE"
        with pytest.raises(RequestError) as outsider:
            await b.request("tip.send", session=joined.session, amount=1)
        assert outsider.value.code == "NOT_FOUND"
        await f.request("call.end", session=joined.session)
    assert (await store.balances(server.services.pool, broke.id)).balance == 0
    await assert_ledger_consistent(server.services.pool)


async def test_a_call_that_fails_to_start_for_any_reason_leaves_nothing_behind(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only refusals: an unexpected error while holding the fan's tokens ends the
    row, forgets the session and the invitation, and answers INTERNAL_ERROR."""
    fan = await quick_user(server, tokens=100)
    creator = await quick_user(server, "creator")

    async def broken_hold(**_: object) -> None:
        raise RuntimeError("disk on fire")

    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        invite_id = await ring(f, c, creator.id)
        monkeypatch.setattr(server.services.ledger, "hold", broken_hold)
        with pytest.raises(RequestError) as failed:
            await c.request("call.accept", invite=invite_id)
        assert failed.value.code == "INTERNAL_ERROR"
        ended = await f.next_event(ev.CallInviteEnded)
        assert isinstance(ended, ev.CallInviteEnded) and ended.invite == invite_id
    assert not server.services.sessions.starting and not server.services.sessions.calls
    async with server.services.pool.acquire() as conn:
        rows = await conn.fetch("SELECT status, end_reason FROM sessions WHERE fan_id = $1", fan.id)
    assert [(r["status"], r["end_reason"]) for r in rows] == [("ended", "failed")]


async def test_tips_inside_a_call_and_running_out_of_tokens(make_server) -> None:
    server = await make_server(call_hold_seconds=10)
    fan = await quick_user(server, tokens=24)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        await c.request("creator.rates.set", video=120, voice=60)  # 2 tokens per second
        # the first hold reserves 10 s (20 tokens), leaving 4 spendable for tips
        invite_id = await ring(f, c, creator.id)
        joined = await c.request("call.accept", invite=invite_id)
        warning = await f.next_event(ev.CallLowBalance, timeout=5)
        assert isinstance(warning, ev.CallLowBalance) and warning.seconds_left <= 60
        tip = await f.request("tip.send", session=joined.session, amount=2, message="hi")
        assert tip.amount == 2
        seen = await c.next_event(ev.SessionTip)
        assert isinstance(seen, ev.SessionTip) and seen.amount == 2 and seen.user.id == fan.id
        ended = await f.next_event(ev.CallEnded, timeout=25)
        assert isinstance(ended, ev.CallEnded) and ended.reason == "insufficient_tokens"
        assert ended.totals is not None
        assert ended.totals.tokens_charged == 22  # 24 - the tip, at 2 tokens a second
        assert ended.totals.duration_seconds == 11
    figures = await store.balances(server.services.pool, fan.id)
    assert (figures.balance, figures.held, figures.spendable) == (0, 0, 0)
    await assert_ledger_consistent(server.services.pool)


async def test_disconnect_and_resume_within_grace(make_server) -> None:
    server = await make_server(call_grace=5.0)
    fan = await quick_user(server, tokens=1000)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c:
        f = Client(server.ws_url, fan.access_token, reconnect=False)
        await f.open()
        invite_id = await ring(f, c, creator.id)
        joined = await c.request("call.accept", invite=invite_id)
        started = await f.next_event(ev.CallStarted)
        await f.request("chat.send", session=joined.session, text="before")
        await c.next_event(ev.SessionChat)
        await f.close()
        paused = await c.next_event(ev.CallPaused)
        assert isinstance(paused, ev.CallPaused) and paused.user == fan.id
        await c.request("chat.send", session=joined.session, text="while you were away")
        async with server.connect(fan.access_token) as f2:
            resumed = await f2.request(
                "session.resume", session=joined.session, last_seq=1, epoch=started.call.epoch
            )
            assert resumed.recovered and resumed.missed == 2
            recorded = [
                e for e in f2.drain_events() if isinstance(e, ev.SessionEvent) and e.seq > 0
            ]
            assert [type(e) for e in recorded] == [ev.CallPaused, ev.SessionChat, ev.CallResumed]
            assert [e.seq for e in recorded] == [2, 3, 4]
            assert recorded[1].text == "while you were away"
            assert isinstance(await c.next_event(ev.CallResumed), ev.CallResumed)
            stale = await f2.request(
                "session.resume", session=joined.session, last_seq=0, epoch="other"
            )
            assert not stale.recovered
            totals = await c.request("call.end", session=joined.session)
            assert totals.end_reason == "hangup"
    await assert_ledger_consistent(server.services.pool)


async def test_peer_lost_after_grace(make_server) -> None:
    server = await make_server(call_grace=1.0)
    fan = await quick_user(server, tokens=1000)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c:
        f = Client(server.ws_url, fan.access_token, reconnect=False)
        await f.open()
        invite_id = await ring(f, c, creator.id)
        joined = await c.request("call.accept", invite=invite_id)
        await f.close()
        ended = await c.next_event(ev.CallEnded, timeout=10)
        assert isinstance(ended, ev.CallEnded) and ended.reason == "peer_lost"
        assert ended.session == joined.session
    figures = await store.balances(server.services.pool, fan.id)
    assert figures.held == 0
    await assert_ledger_consistent(server.services.pool)


async def test_calls_end_on_shutdown_with_holds_settled(make_server) -> None:
    server = await make_server()
    fan = await quick_user(server, tokens=1000)
    creator = await quick_user(server, "creator")
    c = Client(server.ws_url, creator.access_token, reconnect=False)
    f = Client(server.ws_url, fan.access_token, reconnect=False)
    await c.open()
    await f.open()
    invite_id = await ring(f, c, creator.id)
    joined = await c.request("call.accept", invite=invite_id)
    await server.server.close()
    assert await wait_closed(f) == 1012
    pool_dsn = server.dsn
    import asyncpg

    conn = await asyncpg.connect(pool_dsn)
    try:
        row = await conn.fetchrow(
            "SELECT status, end_reason FROM sessions WHERE id = $1", joined.session
        )
        assert tuple(row) == ("ended", "server_shutdown")
        held = await conn.fetchval("SELECT count(*) FROM open_holds")
        assert held == 0
    finally:
        await conn.close()
    await c.close()
    await f.close()
