"""Socket requests that move money through Stripe: buying tokens, creator payouts."""

from __future__ import annotations

from protocol import requests as rq
from protocol import results as rs
from server import payments_http
from server.router import Ctx, Router
from storage import payments

router = Router()


@router.handles(rq.TokensPurchase)
async def tokens_purchase(ctx: Ctx, req: rq.TokensPurchase) -> rs.PurchaseResult:
    """Create a PaymentIntent for the package; the client confirms it with Stripe.js."""
    return await payments_http.purchase(ctx.services, ctx.user.id, req.package)


@router.handles(rq.PayoutRequest, role="creator")
async def payout_request(ctx: Ctx, req: rq.PayoutRequest) -> rs.PayoutResult:
    """Pay earned tokens out to the creator's connected Stripe account."""
    return await payments_http.payout(ctx.services, ctx.user.id, req.tokens)


@router.handles(rq.PayoutAccountSet, role="creator")
async def payout_account_set(ctx: Ctx, req: rq.PayoutAccountSet) -> rs.PayoutAccount:
    """Record where this creator's payouts go (a Stripe Connect account id)."""
    await payments.set_payout_account(ctx.services.pool, ctx.user.id, req.account)
    return rs.PayoutAccount(account=req.account)
