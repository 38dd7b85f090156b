"""Socket requests about tokens: history, transfers, earnings, catalogues."""

from __future__ import annotations

import datetime as dt

from protocol import requests as rq
from protocol import results as rs
from server.balances import balance_payload
from server.errors import invalid, ledger_errors, not_found
from server.router import Ctx, Router
from storage import catalogue, users
from storage import ledger as store

router = Router()

#: earnings.summary sources and the ledger kinds that feed them
SOURCES: dict[str, tuple[str, ...]] = {
    "calls": ("call",),
    "tips": ("tip",),
    "gifts": ("gift",),
    "messages": ("message",),
    "subscriptions": ("subscription",),
    "shop": ("shop",),
}


def _cursor(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit():
        raise invalid("`before` must be a cursor returned as `next`")
    return int(raw)


@router.handles(rq.TransactionsList)
async def transactions_list(ctx: Ctx, req: rq.TransactionsList) -> rs.TransactionPage:
    entries = await store.entries(
        ctx.services.pool,
        ctx.user.id,
        limit=req.limit,
        before_id=_cursor(req.before),
        kind=req.kind,
    )
    items = [
        rs.Transaction(
            id=str(e.id),
            kind=e.kind,
            amount=e.amount,
            direction="out" if e.outgoing else "in",
            counterparty=e.counterparty,
            reference=e.reference,
            created_at=e.created_at.timestamp(),
        )
        for e in entries
    ]
    next_cursor = items[-1].id if len(items) == req.limit else None
    return rs.TransactionPage(items=items, next=next_cursor)


@router.handles(rq.TokensTransfer)
async def tokens_transfer(ctx: Ctx, req: rq.TokensTransfer) -> rs.TransferResult:
    sender = ctx.user.id
    if req.to == sender:
        raise invalid("cannot transfer tokens to yourself")
    recipient = await users.get_user(ctx.services.pool, req.to)
    if recipient is None or not recipient.active:
        raise not_found("recipient")
    with ledger_errors():
        payment = await ctx.services.ledger.transfer(
            sender=sender,
            recipient=recipient.id,
            amount=req.amount,
            key=f"xfer:{sender}:{req.key}",
            reference=req.note[:200],
        )
    figures = await store.balances(ctx.services.pool, sender)
    return rs.TransferResult(
        transfer=str(payment.transfer_id),
        amount=payment.amount,
        balance=balance_payload(figures),
        replayed=payment.replayed,
    )


@router.handles(rq.EarningsSummary, role="creator")
async def earnings_summary(ctx: Ctx, req: rq.EarningsSummary) -> rs.EarningsResult:
    today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since = today - dt.timedelta(days=req.days - 1)
    rows = await store.earnings_by_day_and_kind(ctx.services.pool, ctx.user.id, since)
    by_day: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for day, kind, tokens in rows:
        by_day[day.isoformat()] = by_day.get(day.isoformat(), 0) + tokens
        by_kind[kind] = by_kind.get(kind, 0) + tokens
    by_source = {name: sum(by_kind.get(k, 0) for k in kinds) for name, kinds in SOURCES.items()}
    known = {k for kinds in SOURCES.values() for k in kinds}
    other = sum(v for k, v in by_kind.items() if k not in known)
    if other:
        by_source["other"] = other
    figures = await store.balances(ctx.services.pool, ctx.user.id)
    return rs.EarningsResult(
        total=sum(by_day.values()),
        by_day=[rs.EarningsDay(day=d, tokens=t) for d, t in sorted(by_day.items())],
        by_source=by_source,
        available=figures.earnings,
    )


@router.handles(rq.PackagesList)
async def packages_list(ctx: Ctx, req: rq.PackagesList) -> rs.PackageList:
    found = await catalogue.packages(ctx.services.pool)
    return rs.PackageList(
        packages=[
            rs.TokenPackage(
                id=p.id, tokens=p.tokens, price_cents=p.price_cents, currency=p.currency
            )
            for p in found
        ]
    )


@router.handles(rq.GiftsList)
async def gifts_list(ctx: Ctx, req: rq.GiftsList) -> rs.GiftList:
    found = await catalogue.gifts(ctx.services.pool)
    return rs.GiftList(gifts=[rs.Gift(id=g.id, name=g.name, tokens=g.tokens) for g in found])
