"""Creators' rates and availability; call invitations, accept, end, history."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import time

from billing.metering import tokens_for_seconds
from protocol import events as ev
from protocol import requests as rq
from protocol import results as rs
from protocol.codes import ErrorCode
from server.errors import ApiError, invalid, ledger_errors, not_found
from server.identity import user_ref
from server.router import Ctx, Router
from server.sessions.call_actor import CallActor
from server.sessions.call_core import CallConfig, CallCore, Hold
from server.sessions.effects import new_epoch
from server.sessions.invites import Invite
from storage import ledger as store
from storage import sessions, users
from storage.sessions import CallCheckpoint

router = Router()
log = logging.getLogger("digis.calls")


@router.handles(rq.CreatorRatesSet, role="creator")
async def rates_set(ctx: Ctx, req: rq.CreatorRatesSet) -> rs.Rates:
    saved = await users.set_creator_rates(ctx.services.pool, ctx.user.id, req.video, req.voice)
    return rs.Rates(video=saved.video_rate, voice=saved.voice_rate)


@router.handles(rq.CreatorAvailabilitySet, role="creator")
async def availability_set(ctx: Ctx, req: rq.CreatorAvailabilitySet) -> rs.AvailabilityResult:
    if req.status == "offline":
        raise invalid("availability is online, busy or away; offline means no open socket")
    saved = await users.set_availability(ctx.services.pool, ctx.user.id, req.status)
    return rs.AvailabilityResult(status=saved.availability)  # type: ignore[arg-type]


def first_second_cost(rate: int) -> int:
    """Tokens a fan needs to start a call: the first whole token the meter will charge."""
    return 0 if rate <= 0 else 1


@router.handles(rq.CallInvite)
async def call_invite(ctx: Ctx, req: rq.CallInvite) -> rs.InviteResult:
    registry = ctx.services.sessions
    me = ctx.user
    if req.creator == me.id:
        raise invalid("you cannot call yourself")
    creator = await users.get_user(ctx.services.pool, req.creator)
    if creator is None or not creator.active or creator.role != "creator":
        raise not_found("creator")
    settings = await users.get_creator_settings(ctx.services.pool, creator.id)
    availability = settings.availability if settings else "online"
    if not ctx.services.hub.is_online(creator.id):
        raise ApiError(ErrorCode.CREATOR_UNAVAILABLE, "the creator is offline")
    if availability != "online":
        raise ApiError(ErrorCode.CREATOR_UNAVAILABLE, f"the creator is {availability}")
    if registry.busy(creator.id):
        raise ApiError(ErrorCode.CREATOR_UNAVAILABLE, "the creator is in another call")
    if registry.busy(me.id) or me.id in registry.invites.by_fan:
        raise ApiError(ErrorCode.INVALID_STATE, "you are already in a call or ringing someone")
    rate = (settings.video_rate if req.kind == "video" else settings.voice_rate) if settings else 0
    figures = await store.balances(ctx.services.pool, me.id)
    needed = first_second_cost(rate)
    if figures.spendable < needed:
        raise ApiError(
            ErrorCode.INSUFFICIENT_TOKENS,
            f"this call costs {rate} tokens per minute; your spendable balance is "
            f"{figures.spendable}",
        )
    if me.id in registry.invites.by_fan:  # checked again: a concurrent invite may have won
        raise ApiError(ErrorCode.INVALID_STATE, "you are already ringing someone")
    invite = registry.invites.create(me.ref(), user_ref(creator), req.kind, rate)
    return rs.InviteResult(
        invite=invite.id,
        creator=invite.creator,
        kind=req.kind,
        rate_per_minute=rate,
        expires_at=invite.expires_at,
    )


def _invite_for(ctx: Ctx, invite_id: str, *, as_creator: bool) -> Invite:
    registry = ctx.services.sessions
    invite = registry.invites.by_id.get(invite_id)
    if invite is None:
        outcome = registry.invites.ended.get(invite_id)
        if outcome is not None:
            raise ApiError(ErrorCode.INVALID_STATE, f"the invitation has already ended ({outcome})")
        raise not_found("invitation")
    owner = invite.creator.id if as_creator else invite.fan.id
    if owner != ctx.user.id:
        raise not_found("invitation")
    if invite.state != "ringing":
        raise ApiError(ErrorCode.INVALID_STATE, "the invitation is already being answered")
    return invite


@router.handles(rq.CallCancel)
async def call_cancel(ctx: Ctx, req: rq.CallCancel) -> rs.Empty:
    invite = _invite_for(ctx, req.invite, as_creator=False)
    ctx.services.sessions.invites.end(invite, "cancelled")
    return rs.Empty()


@router.handles(rq.CallDecline, role="creator")
async def call_decline(ctx: Ctx, req: rq.CallDecline) -> rs.Empty:
    invite = _invite_for(ctx, req.invite, as_creator=True)
    ctx.services.sessions.invites.end(invite, "declined")
    return rs.Empty()


@router.handles(rq.CallAccept, role="creator")
async def call_accept(ctx: Ctx, req: rq.CallAccept) -> rs.CallJoined:
    services = ctx.services
    registry = services.sessions
    invite = _invite_for(ctx, req.invite, as_creator=True)
    if registry.busy(ctx.user.id):
        raise ApiError(ErrorCode.INVALID_STATE, "you are already in a call")
    registry.invites.start_accepting(invite)
    registry.accepting.add(ctx.user.id)
    try:
        actor = await _start_call(ctx, invite)
    except BaseException:
        registry.accepting.discard(ctx.user.id)
        raise
    registry.accepting.discard(ctx.user.id)
    registry.invites.accepted(invite, ctx.conn)
    fan_view = actor.joined(invite.fan.id)
    creator_view = actor.joined(invite.creator.id)
    services.hub.send_to_user(invite.fan.id, ev.CallStarted(call=fan_view))
    for conn in services.hub.sockets(invite.creator.id):
        if conn is not ctx.conn:
            conn.send_message(ev.CallStarted(call=creator_view))
    log.info("call started", extra={"session": actor.session, "rate": invite.rate})
    return creator_view


async def _start_call(ctx: Ctx, invite: Invite) -> CallActor:
    """Write the session row, take the first hold, start the actor.

    The row comes first so that every hold always belongs to a session
    row: a crash at any point leaves something settlement can find (an
    active row, with or without holds), never an orphaned hold.
    """
    services = ctx.services
    settings = services.settings
    registry = services.sessions
    session = secrets.token_hex(12)
    hold_key = f"hold:{session}:1"
    amount = max(1, tokens_for_seconds(invite.rate, settings.call_hold_seconds))
    started = time.time()
    registry.starting.add(session)
    row_written = False
    try:
        await sessions.create_call(
            services.pool,
            session=session,
            kind=invite.kind,
            fan_id=invite.fan.id,
            creator_id=invite.creator.id,
            rate=invite.rate,
            fee_bps=settings.platform_fee_bps,
            node_id=services.node_id,
            started_at=started,
        )
        row_written = True
        with ledger_errors():
            hold = await services.ledger.hold(
                fan=invite.fan.id, amount=amount, key=hold_key, reference=session
            )
        if not hold.applied or not hold.amount:
            raise ApiError(
                ErrorCode.INSUFFICIENT_TOKENS, "the fan's balance is too low for this call"
            )
    except BaseException as exc:
        # Whatever went wrong (a refusal, a database error, cancellation), the
        # call does not start: end its row (so settlement releases any hold
        # that did commit), forget it, and tell both sides.
        if row_written and isinstance(exc, Exception):
            empty = CallCheckpoint(session, 0, 0, 0, 0)
            with contextlib.suppress(Exception):  # if this fails, settlement ends the row
                await sessions.end_call(
                    services.pool,
                    session=session,
                    totals=empty,
                    reason="failed",
                    ended_at=time.time(),
                )
        registry.starting.discard(session)
        message = exc.message if isinstance(exc, ApiError) else "the call could not be started"
        registry.invites.end(invite, "failed", message)
        raise
    assert hold.amount is not None
    now = services.clock()
    core = CallCore(
        session=session,
        epoch=new_epoch(),
        fan=invite.fan,
        creator=invite.creator,
        kind=invite.kind,
        rate=invite.rate,
        fee_bps=settings.platform_fee_bps,
        first_hold=Hold(1, hold_key, hold.amount),
        spendable=hold.debit_spendable or 0,
        now=now,
        config=CallConfig(hold_seconds=settings.call_hold_seconds, grace=settings.call_grace),
    )
    actor = CallActor(services, core, started_wall=started)
    for user_id in core.participants:
        for conn in services.hub.sockets(user_id):
            actor.attach(conn, user_id, now)
    services.sessions.add_call(actor)
    services.sessions.starting.discard(session)
    actor.start()
    return actor


def call_actor_for(ctx: Ctx, session: str) -> CallActor:
    actor = ctx.services.sessions.calls.get(session)
    if actor is None or not actor.core.is_member(ctx.user.id):
        raise not_found("call")
    return actor


@router.handles(rq.CallEnd)
async def call_end(ctx: Ctx, req: rq.CallEnd) -> rs.CallTotals:
    actor = ctx.services.sessions.calls.get(req.session)
    user = ctx.user.id
    if actor is None:
        row = await sessions.get_call(ctx.services.pool, req.session)
        if row is not None and user in (row.fan_id, row.creator_id):
            raise ApiError(ErrorCode.INVALID_STATE, "the call has already ended")
        raise not_found("call")
    if not actor.core.is_member(user):
        raise not_found("call")
    await actor.ask(lambda a, now: a.core.end(user))
    totals: rs.CallTotals = await actor.wait_finished()
    return totals


@router.handles(rq.CallsHistory)
async def calls_history(ctx: Ctx, req: rq.CallsHistory) -> rs.CallHistoryPage:
    before = None
    if req.before is not None:
        try:
            before = dt.datetime.fromtimestamp(float(req.before), dt.UTC)
        except (ValueError, OverflowError, OSError):
            raise invalid("`before` must be a cursor returned as `next`") from None
    rows = await sessions.calls_history(
        ctx.services.pool, ctx.user.id, limit=req.limit, before=before
    )
    people = {
        u.id: user_ref(u)
        for u in await users.get_users(
            ctx.services.pool, list({r.fan_id for r in rows} | {r.creator_id for r in rows})
        )
    }
    items = [
        rs.CallTotals(
            session=r.id,
            kind=r.kind,  # type: ignore[arg-type]
            fan=people[r.fan_id],
            creator=people[r.creator_id],
            started_at=r.started_at.timestamp(),
            ended_at=r.ended_at.timestamp() if r.ended_at else None,
            duration_seconds=r.billed_seconds,
            tokens_charged=r.tokens_charged,
            platform_fee=r.platform_fee,
            creator_earned=r.creator_earned,
            end_reason=r.end_reason or ("active" if r.status == "active" else ""),
        )
        for r in rows
    ]
    next_cursor = repr(rows[-1].started_at.timestamp()) if len(rows) == req.limit else None
    return rs.CallHistoryPage(items=items, next=next_cursor)
