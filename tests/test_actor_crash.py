"""An actor that crashes ends its session cleanly and the server keeps running."""

from __future__ import annotations

from protocol import events as ev
from storage import ledger as store
from storage import sessions
from tests.conftest import RunningServer, quick_user, ring
from tests.money import assert_ledger_consistent


async def test_a_crashing_call_actor_settles_and_tells_both_sides(server: RunningServer) -> None:
    fan = await quick_user(server, tokens=500)
    creator = await quick_user(server, "creator")
    async with server.connect(creator.access_token) as c, server.connect(fan.access_token) as f:
        joined = await c.request("call.accept", invite=await ring(f, c, creator.id))
        await f.next_event(ev.CallTick, timeout=8)
        actor = server.services.sessions.calls[joined.session]

        def explode(now: float) -> None:
            raise RuntimeError("bug in the core")

        actor.core.on_time = explode  # type: ignore[method-assign]
        actor.tell(lambda a, now: None)
        for client in (f, c):
            ended = await client.next_event(ev.CallEnded, timeout=10)
            assert isinstance(ended, ev.CallEnded) and ended.reason == "server_error"
            assert ended.totals is not None and ended.totals.tokens_charged >= 5
        assert joined.session not in server.services.sessions.calls
        row = await sessions.get_call(server.services.pool, joined.session)
        assert row is not None and row.status == "ended" and row.end_reason == "server_error"
        figures = await store.balances(server.services.pool, fan.id)
        assert figures.held == 0 and figures.balance == 500 - row.tokens_charged
        assert (await f.request("ping")).server_time > 0
        await c.request("creator.availability.set", status="online")
        again = await f.request("call.invite", creator=creator.id)
        assert again.invite
    await assert_ledger_consistent(server.services.pool)
