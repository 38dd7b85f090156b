"""Requests that work inside any session: chat, reactions, tips, gifts, typing,
media tokens and resuming after a reconnect."""

from __future__ import annotations

from billing.ledger import new_key
from protocol import requests as rq
from protocol import results as rs
from protocol.codes import ErrorCode
from server.balances import balance_payload
from server.errors import ApiError, invalid, ledger_errors, not_found
from server.router import Ctx, Router
from server.sessions.call_actor import CallActor
from server.sessions.stream_actor import StreamActor
from storage import catalogue
from storage import ledger as store

router = Router()


def actor_for(ctx: Ctx, session: str) -> CallActor | StreamActor:
    actor = ctx.services.sessions.get(session)
    if actor is None:
        raise not_found("session")
    return actor


async def require_member(ctx: Ctx, actor: CallActor | StreamActor) -> None:
    """Only members may act in a session; others learn nothing (NOT_FOUND)."""
    user = ctx.user.id
    member: bool = await actor.ask(lambda a, now: a.core.is_member(user))
    if not member:
        raise not_found("session")


@router.handles(rq.ChatSend)
async def chat_send(ctx: Ctx, req: rq.ChatSend) -> rs.ChatAccepted:
    actor = actor_for(ctx, req.session)
    user = ctx.user.ref()
    if isinstance(actor, StreamActor):
        message_id, seq = await actor.ask(lambda a, now: a.core.chat_message(user, req.text, now))
        return rs.ChatAccepted(id=message_id, seq=seq)
    assert isinstance(actor, CallActor)
    accepted: rs.ChatAccepted = await actor.ask(lambda a, now: a.chat(user, req.text))
    return accepted


@router.handles(rq.ReactionSend)
async def reaction_send(ctx: Ctx, req: rq.ReactionSend) -> rs.Empty:
    actor = actor_for(ctx, req.session)
    if not isinstance(actor, StreamActor):
        raise invalid("reactions are for streams")
    user = ctx.user.id
    await actor.ask(lambda a, now: a.core.reaction(user, req.emoji))
    return rs.Empty()


@router.handles(rq.Typing)
async def typing(ctx: Ctx, req: rq.Typing) -> rs.Empty:
    actor = actor_for(ctx, req.session)
    if not isinstance(actor, CallActor) or not actor.core.is_member(ctx.user.id):
        raise not_found("call")
    user = ctx.user.id
    await actor.ask(lambda a, now: a.core.typing(user, now))
    return rs.Empty()


async def _pay(
    ctx: Ctx, actor: CallActor | StreamActor, amount: int, kind: str, key: str | None
) -> tuple[int, bool, int]:
    """Move ``amount`` from the caller to the session's creator; (transfer, replayed, spendable)."""
    creator = actor.core.creator.id
    payer = ctx.user.id
    if payer == creator:
        raise invalid(f"you cannot {kind} yourself")
    await require_member(ctx, actor)
    idempotency = f"{kind}:{payer}:{key}" if key else new_key(kind)
    with ledger_errors():
        payment = await ctx.services.ledger.pay_creator(
            payer=payer,
            creator=creator,
            amount=amount,
            key=idempotency,
            kind=kind,
            reference=actor.session,
        )
    return payment.transfer_id, payment.replayed, payment.payer_spendable


@router.handles(rq.TipSend)
async def tip_send(ctx: Ctx, req: rq.TipSend) -> rs.TipResult:
    actor = actor_for(ctx, req.session)
    transfer, replayed, spendable = await _pay(ctx, actor, req.amount, "tip", req.key)
    if not replayed:
        user, message = ctx.user.ref(), req.message
        if isinstance(actor, CallActor):
            actor.tell(lambda a, now: a.core.tipped(user, req.amount, message, spendable))
        else:
            actor.tell(lambda a, now: a.core.tipped(user, req.amount, message))
    figures = await store.balances(ctx.services.pool, ctx.user.id)
    return rs.TipResult(transfer=str(transfer), amount=req.amount, balance=balance_payload(figures))


@router.handles(rq.GiftSend)
async def gift_send(ctx: Ctx, req: rq.GiftSend) -> rs.TipResult:
    actor = actor_for(ctx, req.session)
    gifts = {g.id: g for g in await catalogue.gifts(ctx.services.pool)}
    gift = gifts.get(req.gift)
    if gift is None:
        raise not_found("gift")
    transfer, replayed, spendable = await _pay(ctx, actor, gift.tokens, "gift", req.key)
    if not replayed:
        user = ctx.user.ref()
        if isinstance(actor, CallActor):
            actor.tell(
                lambda a, now: a.core.gifted(user, gift.id, gift.name, gift.tokens, spendable)
            )
        else:
            actor.tell(lambda a, now: a.core.gifted(user, gift.id, gift.name, gift.tokens))
    figures = await store.balances(ctx.services.pool, ctx.user.id)
    return rs.TipResult(
        transfer=str(transfer), amount=gift.tokens, balance=balance_payload(figures)
    )


@router.handles(rq.AgoraToken)
async def agora_token(ctx: Ctx, req: rq.AgoraToken) -> rs.MediaToken:
    actor = actor_for(ctx, req.session)
    user = ctx.user.id
    if not ctx.services.media.enabled:
        await require_member(ctx, actor)
        raise ApiError(ErrorCode.MEDIA_UNAVAILABLE, "media tokens are not configured")

    def issue(a: CallActor | StreamActor, now: float) -> rs.MediaToken:
        if not a.core.is_member(user) or user not in a.by_user:
            raise not_found("session")
        tokens, error = a.media_for(user, a.media_role(user), a.media_ttl(user))
        if not tokens:
            raise ApiError(ErrorCode.MEDIA_UNAVAILABLE, error)
        return tokens[0] if req.kind == "rtc" else tokens[1]

    token: rs.MediaToken = await actor.ask(issue)
    return token


@router.handles(rq.SessionResume)
async def session_resume(ctx: Ctx, req: rq.SessionResume) -> rs.SessionResumed:
    actor = actor_for(ctx, req.session)
    conn, user = ctx.conn, ctx.user
    if isinstance(actor, CallActor):
        resumed: rs.SessionResumed = await actor.ask(
            lambda a, now: a.resume(conn, user.id, req.last_seq, req.epoch, now)
        )
        return resumed
    assert isinstance(actor, StreamActor)
    joined = await actor.ask(lambda a, now: a.join(conn, user.ref(), req.last_seq, req.epoch, now))
    return rs.SessionResumed(
        session=req.session,
        kind="stream",
        epoch=joined.epoch,
        seq=joined.seq,
        recovered=joined.recovered,
        missed=joined.missed,
    )
