"""Going live, watching, leaving, listing live streams."""

from __future__ import annotations

import secrets
import time

from protocol import requests as rq
from protocol import results as rs
from protocol.base import UserRef
from protocol.codes import ErrorCode
from server.errors import ApiError, not_found
from server.router import Ctx, Router
from server.sessions.effects import new_epoch
from server.sessions.stream_actor import StreamActor
from server.sessions.stream_core import StreamConfig, StreamCore
from storage import sessions

router = Router()


def stream_actor_for(ctx: Ctx, session: str) -> StreamActor:
    actor = ctx.services.sessions.streams.get(session)
    if actor is None:
        raise not_found("stream")
    return actor


@router.handles(rq.StreamStart, role="creator")
async def stream_start(ctx: Ctx, req: rq.StreamStart) -> rs.StreamStarted:
    services = ctx.services
    registry = services.sessions
    me = ctx.user
    if me.id in registry.creator_stream:
        raise ApiError(ErrorCode.INVALID_STATE, "you are already live")
    session = secrets.token_hex(12)
    started = time.time()
    registry.starting.add(session)
    try:
        created = await sessions.create_stream(
            services.pool,
            session=session,
            creator_id=me.id,
            title=req.title,
            category=req.category,
            node_id=services.node_id,
            started_at=started,
        )
    except BaseException:
        registry.starting.discard(session)
        raise
    if not created or me.id in registry.creator_stream:
        registry.starting.discard(session)
        raise ApiError(ErrorCode.INVALID_STATE, "you are already live")
    now = services.clock()
    core = StreamCore(
        session=session,
        epoch=new_epoch(),
        creator=me.ref(),
        title=req.title,
        category=req.category,
        started_wall=started,
        now=now,
        config=StreamConfig(grace=max(services.settings.call_grace, 30.0)),
    )
    actor = StreamActor(services, core, services.clock)
    started_view = actor.attach_creator(ctx.conn, now)
    registry.add_stream(actor)
    registry.starting.discard(session)
    actor.start()
    return started_view


@router.handles(rq.StreamEnd)
async def stream_end(ctx: Ctx, req: rq.StreamEnd) -> rs.StreamTotals:
    actor = stream_actor_for(ctx, req.session)
    user = ctx.user.id
    if user != actor.core.creator.id:  # streams are public: no existence to hide
        raise ApiError(ErrorCode.FORBIDDEN, "only the streaming creator can end the stream")
    await actor.ask(lambda a, now: a.core.end(user))
    totals: rs.StreamTotals = await actor.wait_finished()
    return totals


@router.handles(rq.StreamJoin)
async def stream_join(ctx: Ctx, req: rq.StreamJoin) -> rs.StreamJoined:
    actor = stream_actor_for(ctx, req.session)
    conn, user = ctx.conn, ctx.user.ref()
    joined: rs.StreamJoined = await actor.ask(
        lambda a, now: a.join(conn, user, req.last_seq, req.epoch, now)
    )
    return joined


@router.handles(rq.StreamLeave)
async def stream_leave(ctx: Ctx, req: rq.StreamLeave) -> rs.Empty:
    actor = stream_actor_for(ctx, req.session)
    conn, user = ctx.conn, ctx.user.id
    await actor.ask(lambda a, now: a.leave(conn, user, now))
    return rs.Empty()


@router.handles(rq.StreamsLive)
async def streams_live(ctx: Ctx, req: rq.StreamsLive) -> rs.StreamList:
    rows = await sessions.live_streams(ctx.services.pool, limit=req.limit, category=req.category)
    local = ctx.services.sessions.streams
    out = []
    for row in rows:
        actor = local.get(row.id)
        out.append(
            rs.StreamInfo(
                session=row.id,
                creator=UserRef(
                    id=row.creator_id,
                    username=row.creator_username,
                    display_name=row.creator_display_name,
                    role="creator",
                ),
                title=row.title,
                category=row.category,
                viewers=actor.core.viewer_count if actor is not None else row.viewers,
                started_at=row.started_at.timestamp(),
            )
        )
    return rs.StreamList(streams=out)
