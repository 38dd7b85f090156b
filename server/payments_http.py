"""Payments at the edge: ``POST /payments/intent``, ``POST /webhooks/stripe``, and the
glue the socket handlers and the app factory share with them.

Billing knows nothing of sockets: it reports what users should hear as
notices, which :func:`notifier` turns into ``payment.updated``,
``account.flagged`` and ``payout.updated`` events on this node's hub. The
Stripe gateway is ``services.stripe`` (disabled without
``STRIPE_SECRET_KEY``: purchase and payout requests answer PAYMENT_ERROR).

Webhooks: the signature is checked with ``stripe.Webhook.construct_event``
(default 300 s tolerance) over the raw body; a bad, missing or stale
signature or a body that is not an event is answered 400 and changes
nothing; without ``STRIPE_WEBHOOK_SECRET`` the endpoint answers 503. A
processed or duplicate event is answered 200 right after its one database
transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator

import stripe
from aiohttp import web

from billing import payouts, purchases
from billing.payouts import PayoutNotice, PayoutRefused
from billing.purchases import FlagNotice, PaymentNotice, UnknownPackage
from billing.stripe_gateway import (
    MalformedEvent,
    PaymentProviderError,
    PaymentsDisabled,
    StripeGateway,
    parse_event,
)
from protocol import results as rs
from protocol.base import ServerMessage
from protocol.codes import ErrorCode
from protocol.events import AccountFlagged, PaymentUpdated, PayoutUpdated
from protocol.http import PaymentIntentBody
from server import identity
from server.appkeys import SERVICES
from server.envelope import enveloped, json_response
from server.errors import ApiError, ledger_errors
from server.http_api import decode_body
from server.services import Services

log = logging.getLogger("digis.payments")

#: Seconds between sweeps for payouts stuck ``pending`` (and the age they must reach).
RESUME_EVERY = 300.0
RESUME_AFTER = 60.0

Notice = PaymentNotice | FlagNotice | PayoutNotice


def _enabled_gateway(services: Services) -> StripeGateway:
    gateway = services.stripe
    if not gateway.enabled:
        raise ApiError(ErrorCode.PAYMENT_ERROR, "payments are not configured")
    return gateway


def notifier(services: Services) -> Callable[[Notice], None]:
    """A notify hook sending billing's notices to the user's sockets on this node."""

    def send(notice: Notice) -> None:
        event: ServerMessage
        match notice:
            case PaymentNotice():
                event = PaymentUpdated(
                    purchase=notice.purchase,
                    status=notice.status,
                    tokens=notice.tokens,
                    message=notice.message,
                )
            case FlagNotice():
                event = AccountFlagged(reason=notice.reason, debt=notice.debt, frozen=notice.frozen)
            case PayoutNotice():
                event = PayoutUpdated(
                    payout=notice.payout, status=notice.status, tokens=notice.tokens
                )
        services.hub.send_to_user(notice.user_id, event)

    return send


@contextlib.contextmanager
def payment_errors() -> Iterator[None]:
    """Translate billing's payment refusals into error envelopes (nothing moved)."""
    try:
        with ledger_errors():
            yield
    except PaymentsDisabled:
        raise ApiError(ErrorCode.PAYMENT_ERROR, "payments are not configured") from None
    except PaymentProviderError as exc:
        raise ApiError(ErrorCode.PAYMENT_ERROR, f"payment provider: {exc.message}") from None
    except UnknownPackage:
        raise ApiError(ErrorCode.NOT_FOUND, "package not found") from None
    except PayoutRefused as exc:
        code = ErrorCode.INVALID_STATE
        if exc.reason in ("below_minimum", "too_large"):
            code = ErrorCode.VALIDATION_ERROR
        raise ApiError(code, exc.message) from None


async def purchase(services: Services, user_id: int, package: str) -> rs.PurchaseResult:
    """Start buying ``package`` (socket ``tokens.purchase`` and ``POST /payments/intent``)."""
    gateway = _enabled_gateway(services)
    with payment_errors():
        started = await purchases.start_purchase(
            services.ledger, gateway, user_id=user_id, package_id=package
        )
    return rs.PurchaseResult(
        purchase=started.purchase,
        payment_intent=started.payment_intent,
        client_secret=started.client_secret,
        tokens=started.tokens,
        amount_cents=started.amount_cents,
        currency=started.currency,
    )


async def payout(services: Services, user_id: int, tokens: int) -> rs.PayoutResult:
    """Pay a creator's earned tokens out (socket ``payout.request``).

    Stripe refusing the transfer is a PAYMENT_ERROR (the tokens are back in
    earnings); an unknown answer is a result with status ``pending``.
    """
    gateway = _enabled_gateway(services)
    settings = services.settings
    with payment_errors():
        outcome = await payouts.request_payout(
            services.ledger,
            gateway,
            user_id=user_id,
            tokens=tokens,
            minimum=settings.payout_minimum,
            token_value_cents=settings.token_value_cents,
            notify=notifier(services),
        )
    if outcome.status == "failed":
        raise ApiError(
            ErrorCode.PAYMENT_ERROR,
            f"payout {outcome.payout} failed ({outcome.message}); the tokens are back in earnings",
        )
    return rs.PayoutResult(
        payout=outcome.payout,
        tokens=outcome.tokens,
        amount_cents=outcome.amount_cents,
        currency=outcome.currency,
        status=outcome.status,
    )


# --- HTTP routes ---------------------------------------------------------------------


async def payment_intent(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    header = request.headers.get("Authorization", "")
    user = await identity.principal_from_authorization(services, header)
    body = await decode_body(request, PaymentIntentBody)
    return json_response(await purchase(services, user.id, body.package))


async def stripe_webhook(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    secret = services.settings.stripe_webhook_secret
    if not secret:
        raise ApiError(ErrorCode.TEMPORARILY_UNAVAILABLE, "Stripe webhooks are not configured")
    payload = await request.read()
    try:
        stripe.Webhook.construct_event(payload, request.headers.get("Stripe-Signature"), secret)
    except stripe.SignatureVerificationError as exc:
        log.warning("stripe webhook refused", extra={"why": exc.user_message})
        raise ApiError(ErrorCode.VALIDATION_ERROR, "invalid Stripe signature") from None
    except (ValueError, TypeError, AttributeError, KeyError):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "webhook body is not a Stripe event") from None
    try:
        event = parse_event(json.loads(payload))
    except (MalformedEvent, ValueError):
        raise ApiError(ErrorCode.VALIDATION_ERROR, "webhook body is not a Stripe event") from None
    gateway = services.stripe
    try:
        outcome = await purchases.process_event(
            services.ledger,
            event,
            lookup=gateway.retrieve_payment_intent if gateway.enabled else None,
            notify=notifier(services),
        )
    except PaymentProviderError:
        raise ApiError(
            ErrorCode.TEMPORARILY_UNAVAILABLE, "cannot reach Stripe to resolve the event"
        ) from None
    return json_response({"received": True, "outcome": outcome})


def add_payment_routes(app: web.Application) -> None:
    app.router.add_post("/payments/intent", enveloped(payment_intent))
    app.router.add_post("/webhooks/stripe", enveloped(stripe_webhook))


# --- background work -----------------------------------------------------------------


async def _resume_loop(services: Services, gateway: StripeGateway) -> None:
    while True:
        try:
            await payouts.resume_pending_payouts(
                services.ledger, gateway, older_than=RESUME_AFTER, notify=notifier(services)
            )
        except Exception:
            log.warning("payout resume sweep failed", exc_info=True)
        await asyncio.sleep(RESUME_EVERY)


def start_payment_tasks(services: Services) -> None:
    """Spawn the stuck-payout sweep (first run now) and, when
    ``DIGIS_AUTO_PAYOUT_INTERVAL`` > 0, the automatic payout loop."""
    gateway = services.stripe
    if not gateway.enabled:
        return
    services.spawn(_resume_loop(services, gateway), "payout-resume")
    settings = services.settings
    if settings.auto_payout_interval > 0:
        services.spawn(
            payouts.auto_payout_loop(
                services.ledger,
                gateway,
                interval=settings.auto_payout_interval,
                minimum=settings.payout_minimum,
                token_value_cents=settings.token_value_cents,
                notify=notifier(services),
            ),
            "auto-payouts",
        )
