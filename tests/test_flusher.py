"""The flusher writes every live session in one transaction and is never blocked."""

from __future__ import annotations

from storage import sessions
from tests.conftest import RunningServer, call_row, quick_user


async def test_one_flush_writes_all_streams_and_a_bad_row_blocks_nothing(
    server: RunningServer,
) -> None:
    creators = [await quick_user(server, "creator") for _ in range(3)]
    flusher = server.services.sessions.flusher
    clients = []
    sessions_ids = []
    for creator in creators:
        client = server.connect(creator.access_token)
        c = await client.__aenter__()
        clients.append((client, c))
        sessions_ids.append((await c.request("stream.start", title="flush")).stream.session)
    try:
        for session in sessions_ids:
            server.services.sessions.streams[session].dirty = True
        before = flusher.flushes
        assert await flusher.flush_once()
        assert flusher.flushes == before + 1  # three streams, one transaction
        poisoned = server.services.sessions.streams[sessions_ids[0]]
        poisoned.core.unsaved_chat.append((1, creators[0].id, "bad\x00row", 0.0))
        poisoned.dirty = True
        assert not await flusher.flush_once()  # refused by PostgreSQL, reported, dropped
        poisoned.core.chat_count = 7
        poisoned.dirty = True
        assert await flusher.flush_once()  # and the next flush goes through
        async with server.services.pool.acquire() as conn:
            assert (
                await conn.fetchval(
                    "SELECT chat_messages FROM streams WHERE id = $1", sessions_ids[0]
                )
                == 7
            )
        rows = await sessions.live_streams(server.services.pool, limit=10, category=None)
        assert {r.id for r in rows} == set(sessions_ids)
    finally:
        for (client, c), session in zip(clients, sessions_ids, strict=True):
            await c.request("stream.end", session=session)
            await client.__aexit__(None, None, None)


async def test_a_call_end_the_actor_could_not_write_is_written_by_the_flusher(
    server: RunningServer,
) -> None:
    import time

    from storage.sessions import CallCheckpoint

    fan = await quick_user(server)
    creator = await quick_user(server, "creator")
    await call_row(server, "deferred1", fan.id, creator.id, kind="voice")
    flusher = server.services.sessions.flusher
    flusher.pending_ends["deferred1"] = (
        CallCheckpoint("deferred1", 9, 9, 1, 8),
        "hangup",
        time.time(),
    )
    assert await flusher.flush_once()
    assert not flusher.pending_ends
    row = await sessions.get_call(server.services.pool, "deferred1")
    assert row is not None
    assert (row.status, row.billed_seconds, row.tokens_charged, row.end_reason) == (
        "ended",
        9,
        9,
        "hangup",
    )


async def test_simultaneous_call_ends_share_a_transaction(server: RunningServer) -> None:
    import asyncio
    import time

    from storage.sessions import CallCheckpoint

    fan = await quick_user(server)
    creator = await quick_user(server, "creator")
    ids = [f"mass{n}_{fan.id}" for n in range(40)]
    for session in ids:
        await call_row(server, session, fan.id, creator.id)
    ends = server.services.sessions.ends
    # the first call was already ended elsewhere (settled by another node, say)
    await ends.end(CallCheckpoint(ids[0], 3, 3, 0, 3), "server_error", time.time())
    before = ends.batches
    reasons = await asyncio.gather(
        *(
            ends.end(CallCheckpoint(s, n, n, 0, n), "hangup", time.time())
            for n, s in enumerate(ids)
        ),
        ends.end(CallCheckpoint("no-such-call", 1, 1, 0, 1), "hangup", time.time()),
    )
    assert ends.batches - before <= 2  # 41 ends, not 41 transactions
    assert reasons == ["server_error", *["hangup"] * 39, None]
    for n, session in enumerate(ids):
        row = await sessions.get_call(server.services.pool, session)
        assert row is not None and row.status == "ended"
        assert row.billed_seconds == (3 if n == 0 else n)  # an ended row is kept as it was
