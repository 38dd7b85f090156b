"""Rows of calls (``sessions``) and streams, and their batched checkpoints."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from storage.db import Conn, Executor


def _ts(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


@dataclass(frozen=True, slots=True)
class CallCheckpoint:
    session: str
    seconds: int
    charged: int
    fee: int
    earned: int


@dataclass(frozen=True, slots=True)
class CallRow:
    id: str
    kind: str
    fan_id: int
    creator_id: int
    rate_per_minute: int
    fee_bps: int
    status: str
    node_id: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    billed_seconds: int
    tokens_charged: int
    platform_fee: int
    creator_earned: int
    end_reason: str | None
    checkpoint_at: dt.datetime


_CALL_COLUMNS = (
    "id, kind, fan_id, creator_id, rate_per_minute, fee_bps, status, node_id, started_at, "
    "ended_at, billed_seconds, tokens_charged, platform_fee, creator_earned, end_reason, "
    "checkpoint_at"
)


async def create_call(
    conn: Executor,
    *,
    session: str,
    kind: str,
    fan_id: int,
    creator_id: int,
    rate: int,
    fee_bps: int,
    node_id: str,
    started_at: float,
) -> None:
    await conn.execute(
        """INSERT INTO sessions (id, kind, fan_id, creator_id, rate_per_minute, fee_bps, node_id,
                                 started_at, checkpoint_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)""",
        session,
        kind,
        fan_id,
        creator_id,
        rate,
        fee_bps,
        node_id,
        _ts(started_at),
    )


async def checkpoint_calls(conn: Executor, rows: Sequence[CallCheckpoint]) -> int:
    """One statement for every live call: usage so far, never moving backwards."""
    if not rows:
        return 0
    result = await conn.execute(
        """UPDATE sessions s
           SET billed_seconds = v.seconds, tokens_charged = v.charged, platform_fee = v.fee,
               creator_earned = v.earned, checkpoint_at = now()
           FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[])
                AS v(id, seconds, charged, fee, earned)
           WHERE s.id = v.id AND s.status = 'active' AND s.tokens_charged <= v.charged""",
        [r.session for r in rows],
        [r.seconds for r in rows],
        [r.charged for r in rows],
        [r.fee for r in rows],
        [r.earned for r in rows],
    )
    return int(result.split()[-1])


async def end_call(
    conn: Executor, *, session: str, totals: CallCheckpoint, reason: str, ended_at: float
) -> CallRow | None:
    """Mark a call ended with its final totals (idempotent: ended rows are kept)."""
    row = await conn.fetchrow(
        f"""UPDATE sessions
            SET status = 'ended', ended_at = $2, billed_seconds = $3, tokens_charged = $4,
                platform_fee = $5, creator_earned = $6, end_reason = $7, checkpoint_at = now()
            WHERE id = $1 AND status = 'active'
            RETURNING {_CALL_COLUMNS}""",
        session,
        _ts(ended_at),
        totals.seconds,
        totals.charged,
        totals.fee,
        totals.earned,
        reason,
    )
    if row is None:
        return await get_call(conn, session)
    return CallRow(**dict(row.items()))


async def end_calls(conn: Executor, ends: Sequence[tuple[CallCheckpoint, str, float]]) -> None:
    """Batch form of :func:`end_call` (checkpoint, reason, ended_at) for the flusher."""
    if not ends:
        return
    await conn.execute(
        """UPDATE sessions s
           SET status = 'ended', ended_at = to_timestamp(v.ended), billed_seconds = v.seconds,
               tokens_charged = v.charged, platform_fee = v.fee, creator_earned = v.earned,
               end_reason = v.reason, checkpoint_at = now()
           FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[],
                       $6::text[], $7::float8[])
                AS v(id, seconds, charged, fee, earned, reason, ended)
           WHERE s.id = v.id AND s.status = 'active'""",
        [c.session for c, _, _ in ends],
        [c.seconds for c, _, _ in ends],
        [c.charged for c, _, _ in ends],
        [c.fee for c, _, _ in ends],
        [c.earned for c, _, _ in ends],
        [reason for _, reason, _ in ends],
        [at for _, _, at in ends],
    )


async def end_reasons(conn: Executor, sessions: Sequence[str]) -> dict[str, str | None]:
    """The stored end reason of each of ``sessions`` that has a row."""
    rows = await conn.fetch(
        "SELECT id, end_reason FROM sessions WHERE id = ANY($1::text[])", list(sessions)
    )
    return {row["id"]: row["end_reason"] for row in rows}


async def get_call(conn: Executor, session: str) -> CallRow | None:
    row = await conn.fetchrow(f"SELECT {_CALL_COLUMNS} FROM sessions WHERE id = $1", session)
    return None if row is None else CallRow(**dict(row.items()))


async def calls_history(
    conn: Executor, user_id: int, *, limit: int, before: dt.datetime | None
) -> list[CallRow]:
    rows = await conn.fetch(
        f"""SELECT {_CALL_COLUMNS} FROM sessions
            WHERE (fan_id = $1 OR creator_id = $1) AND ($2::timestamptz IS NULL OR started_at < $2)
            ORDER BY started_at DESC LIMIT $3""",
        user_id,
        before,
        limit,
    )
    return [CallRow(**dict(r.items())) for r in rows]


#: A session (call or stream) whose node is gone, with the arguments of
#: :func:`_node_gone_args` as $1-$5: at start-up (``include_own``) every one of
#: this node id; always, other nodes' that stopped checkpointing long ago and
#: do not heartbeat (unknown liveness, ``live_nodes=None``, leaves them alone).
_NODE_GONE = """((($3 AND node_id = $1)
      OR ($5 AND node_id <> $1 AND NOT (node_id = ANY($4::text[]))
          AND checkpoint_at < now() - make_interval(secs => $2))))"""


def _node_gone_args(
    node_id: str, stale_seconds: float, include_own: bool, live_nodes: set[str] | None
) -> tuple[object, ...]:
    return node_id, stale_seconds, include_own, sorted(live_nodes or ()), live_nodes is not None


async def calls_to_settle(
    conn: Executor,
    *,
    node_id: str,
    stale_seconds: float,
    include_own: bool,
    live_nodes: set[str] | None,
) -> list[CallRow]:
    """Active calls whose actor is gone.

    With ``include_own`` (at start-up) every active call of this node id:
    they belong to its previous incarnation. Always, calls of other nodes
    that stopped checkpointing ``stale_seconds`` ago and are not in
    ``live_nodes`` (nodes that still heartbeat are never second-guessed);
    ``live_nodes=None`` (liveness unknown) leaves other nodes alone.
    """
    rows = await conn.fetch(
        f"""SELECT {_CALL_COLUMNS} FROM sessions
            WHERE status = 'active' AND {_NODE_GONE}
            ORDER BY started_at""",
        *_node_gone_args(node_id, stale_seconds, include_own, live_nodes),
    )
    return [CallRow(**dict(r.items())) for r in rows]


# --- streams -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamRow:
    id: str
    creator_id: int
    title: str
    category: str
    status: str
    started_at: dt.datetime
    viewers: int
    creator_username: str
    creator_display_name: str


@dataclass(frozen=True, slots=True)
class StreamCheckpoint:
    session: str
    viewers: int
    peak: int
    unique: int
    chat: int
    tips: int
    gifts: int


async def create_stream(
    conn: Executor,
    *,
    session: str,
    creator_id: int,
    title: str,
    category: str,
    node_id: str,
    started_at: float,
) -> bool:
    """Insert a live stream; False if the creator already has one live."""
    result = await conn.execute(
        """INSERT INTO streams (id, creator_id, title, category, node_id, started_at, checkpoint_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6)
           ON CONFLICT (creator_id) WHERE status = 'live' DO NOTHING""",
        session,
        creator_id,
        title,
        category,
        node_id,
        _ts(started_at),
    )
    return result.endswith(" 1")


async def flush_streams(
    conn: Conn,
    stats: Sequence[StreamCheckpoint],
    marks: Sequence[tuple[str, int, float, bool]],
    chat: Sequence[tuple[str, int, int, str, float]],
) -> None:
    """Write stream counters, viewer join/leave rows and chat lines in one go.

    ``marks``: (stream, user, at, joined); ``chat``: (stream, id, user, text, ts).
    """
    if stats:
        await conn.execute(
            """UPDATE streams s
               SET viewers = v.viewers, peak_viewers = v.peak, unique_viewers = v.uniq,
                   chat_messages = v.chat, tips_total = v.tips, gifts_total = v.gifts,
                   checkpoint_at = now()
               FROM unnest($1::text[], $2::int[], $3::int[], $4::int[], $5::int[], $6::bigint[],
                           $7::bigint[]) AS v(id, viewers, peak, uniq, chat, tips, gifts)
               WHERE s.id = v.id AND s.status = 'live'""",
            [s.session for s in stats],
            [s.viewers for s in stats],
            [s.peak for s in stats],
            [s.unique for s in stats],
            [s.chat for s in stats],
            [s.tips for s in stats],
            [s.gifts for s in stats],
        )
    joins = [m for m in marks if m[3]]
    leaves = [m for m in marks if not m[3]]
    if joins:
        await conn.execute(
            """INSERT INTO stream_viewers (stream_id, user_id, joined_at)
               SELECT s, u, to_timestamp(t) FROM unnest($1::text[], $2::int[], $3::float8[])
                      AS v(s, u, t)""",
            [m[0] for m in joins],
            [m[1] for m in joins],
            [m[2] for m in joins],
        )
    if leaves:
        await conn.execute(
            """UPDATE stream_viewers sv SET left_at = to_timestamp(v.t)
               FROM unnest($1::text[], $2::int[], $3::float8[]) AS v(s, u, t)
               WHERE sv.stream_id = v.s AND sv.user_id = v.u AND sv.left_at IS NULL""",
            [m[0] for m in leaves],
            [m[1] for m in leaves],
            [m[2] for m in leaves],
        )
    if chat:
        await conn.execute(
            """INSERT INTO chat_messages (stream_id, id, user_id, body, created_at)
               SELECT s, i, u, b, to_timestamp(t)
               FROM unnest($1::text[], $2::int[], $3::int[], $4::text[], $5::float8[])
                    AS v(s, i, u, b, t)
               ON CONFLICT DO NOTHING""",
            [c[0] for c in chat],
            [c[1] for c in chat],
            [c[2] for c in chat],
            [c[3] for c in chat],
            [c[4] for c in chat],
        )


async def end_stream(
    conn: Executor, *, session: str, totals: StreamCheckpoint, reason: str, ended_at: float
) -> None:
    await conn.execute(
        """UPDATE streams SET status = 'ended', ended_at = $2, viewers = 0, peak_viewers = $3,
                              unique_viewers = $4, chat_messages = $5, tips_total = $6,
                              gifts_total = $7, end_reason = $8, checkpoint_at = now()
           WHERE id = $1 AND status = 'live'""",
        session,
        _ts(ended_at),
        totals.peak,
        totals.unique,
        totals.chat,
        totals.tips,
        totals.gifts,
        reason,
    )
    await conn.execute(
        "UPDATE stream_viewers SET left_at = $2 WHERE stream_id = $1 AND left_at IS NULL",
        session,
        _ts(ended_at),
    )


async def live_streams(conn: Executor, *, limit: int, category: str | None) -> list[StreamRow]:
    rows = await conn.fetch(
        """SELECT s.id, s.creator_id, s.title, s.category, s.status, s.started_at, s.viewers,
                  u.username AS creator_username, u.display_name AS creator_display_name
           FROM streams s JOIN users u ON u.id = s.creator_id
           WHERE s.status = 'live' AND ($1::text IS NULL OR s.category = $1)
           ORDER BY s.viewers DESC, s.started_at DESC LIMIT $2""",
        category,
        limit,
    )
    return [StreamRow(**dict(r.items())) for r in rows]


async def end_stale_streams(
    conn: Executor,
    *,
    node_id: str,
    stale_seconds: float,
    include_own: bool,
    live_nodes: set[str] | None,
    live: set[str],
) -> list[str]:
    """End live streams whose node died; the same rules as :func:`calls_to_settle`.

    ``live`` are streams this process runs (or is starting); never touched.
    """
    rows = await conn.fetch(
        f"""UPDATE streams SET status = 'ended', ended_at = checkpoint_at, viewers = 0,
                               end_reason = 'server_error'
            WHERE status = 'live' AND NOT (id = ANY($6::text[])) AND {_NODE_GONE}
            RETURNING id""",
        *_node_gone_args(node_id, stale_seconds, include_own, live_nodes),
        list(live),
    )
    ids = [r["id"] for r in rows]
    if ids:
        await conn.execute(
            """UPDATE stream_viewers sv SET left_at = s.ended_at FROM streams s
               WHERE sv.stream_id = s.id AND s.id = ANY($1::text[]) AND sv.left_at IS NULL""",
            ids,
        )
    return ids
