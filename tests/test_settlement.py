"""Who settles which orphaned call, and when: never a call that is still alive."""

from __future__ import annotations

import time

from storage import sessions
from tests.conftest import RunningServer, call_row, quick_user


async def _orphan(server: RunningServer, node: str, *, stale: bool) -> str:
    fan = await quick_user(server, tokens=100)
    creator = await quick_user(server, "creator")
    session = f"orphan{fan.id}"
    hold = await server.services.ledger.hold(
        fan=fan.id, amount=30, key=f"hold:{session}:1", reference=session
    )
    assert hold.applied
    await call_row(server, session, fan.id, creator.id, node=node)
    async with server.services.pool.acquire() as conn:
        await conn.execute(
            "UPDATE sessions SET tokens_charged = 7, billed_seconds = 7, checkpoint_at = "
            "now() - make_interval(secs => $2) WHERE id = $1",
            session,
            600.0 if stale else 0.0,
        )
    return session


async def status(server: RunningServer, session: str) -> str:
    row = await sessions.get_call(server.services.pool, session)
    assert row is not None
    return row.status


async def test_periodic_runs_never_touch_this_nodes_or_live_nodes_calls(
    server: RunningServer,
) -> None:
    registry = server.services.sessions
    own = await _orphan(server, server.services.node_id, stale=True)
    alive_elsewhere = await _orphan(server, "node-still-alive", stale=True)
    dead_elsewhere = await _orphan(server, "node-long-gone", stale=True)
    fresh_elsewhere = await _orphan(server, "node-just-quiet", stale=False)
    await server.services.redis.zadd("digis:nodes", {"node-still-alive": time.time()})
    assert await registry.settle_now() == 1
    assert await status(server, dead_elsewhere) == "ended"
    for session in (own, alive_elsewhere, fresh_elsewhere):
        assert await status(server, session) == "active"
    # a call being set up by this process is protected even at start-up
    registry.starting.add(own)
    assert await registry.settle_now(at_start=True) == 0
    registry.starting.discard(own)
    assert await registry.settle_now(at_start=True) == 1
    row = await sessions.get_call(server.services.pool, own)
    assert row is not None and row.status == "ended" and row.tokens_charged == 7


async def test_no_redis_means_other_nodes_are_left_alone(server: RunningServer) -> None:
    orphan = await _orphan(server, "node-long-gone", stale=True)
    server.services.presence.degraded = True
    try:
        assert await server.services.sessions.settle_now() == 0
        assert await status(server, orphan) == "active"
    finally:
        server.services.presence.degraded = False
    assert await server.services.sessions.settle_now() == 1


async def test_holds_of_ended_sessions_are_released(server: RunningServer) -> None:
    from storage.sessions import CallCheckpoint

    session = await _orphan(server, server.services.node_id, stale=False)
    await sessions.end_call(
        server.services.pool,
        session=session,
        totals=CallCheckpoint(session, 0, 0, 0, 0),
        reason="failed",
        ended_at=time.time(),
    )
    async with server.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM open_holds") == 1
    await server.services.sessions.settle_now()
    async with server.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM open_holds") == 0


async def test_posts_ahead_of_the_checkpoint_stand_with_consistent_seconds(
    server: RunningServer,
) -> None:
    """The final post committed, the process died before the end row: 9 tokens
    posted at 60/min against a checkpoint of 7 s / 7 tokens."""
    session = await _orphan(server, "node-long-gone", stale=True)
    async with server.services.pool.acquire() as conn:
        fan, creator = await conn.fetchrow(
            "SELECT fan_id, creator_id FROM sessions WHERE id = $1", session
        )
    await server.services.ledger.post_hold(
        fan=fan,
        creator=creator,
        hold_key=f"hold:{session}:1",
        amount=9,
        fee=1,
        key=f"post:{session}:1",
        reference=session,
    )
    # the post closed the only hold, so settling posts nothing more
    assert await server.services.sessions.settle_now() == 1
    row = await sessions.get_call(server.services.pool, session)
    assert row is not None and row.status == "ended"
    assert (row.tokens_charged, row.billed_seconds) == (9, 9)
