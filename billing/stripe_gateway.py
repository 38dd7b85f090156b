"""Stripe, seen from billing: the few API calls we make and the webhook shapes we read.

:class:`StripeGateway` wraps ``stripe.StripeClient`` with its aiohttp client
(stripe-python's native async path; nothing blocks the loop). Every call
carries an idempotency key we derive from our own ids, so a retry after a
timeout or a crash can never create a second PaymentIntent or Transfer.
Every Stripe failure becomes :class:`PaymentProviderError`, whose
``retryable`` says whether the outcome is unknown (network, 5xx, rate limit,
key in use: retry with the same key) or a definite refusal.

:func:`parse_event` turns a verified webhook body into a :class:`StripeEvent`
holding just the fields billing acts on, so billing never handles Stripe
objects and tests can build events from plain dicts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import stripe

log = logging.getLogger("digis.stripe")


class PaymentProviderError(Exception):
    """Stripe refused or failed a call.

    ``retryable`` is true when the call may or may not have taken effect
    (repeat it with the same idempotency key); false for a definite refusal.
    """

    def __init__(self, message: str, *, retryable: bool = False, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


class PaymentsDisabled(PaymentProviderError):
    """No STRIPE_SECRET_KEY: the gateway makes no calls."""

    def __init__(self) -> None:
        super().__init__("payments are not configured", code="payments_disabled")


class MalformedEvent(ValueError):
    """A webhook body is JSON but not a Stripe event we can read."""


@dataclass(frozen=True, slots=True)
class Intent:
    id: str
    client_secret: str
    amount: int
    currency: str
    status: str
    metadata: dict[str, str]


@dataclass(frozen=True, slots=True)
class TransferReceipt:
    id: str
    amount: int
    currency: str
    destination: str | None


def _error(exc: stripe.StripeError) -> PaymentProviderError:
    status = exc.http_status
    retryable = isinstance(
        exc, stripe.APIConnectionError | stripe.RateLimitError | stripe.IdempotencyError
    ) or (isinstance(exc, stripe.APIError) and (status is None or status >= 500))
    message = exc.user_message or type(exc).__name__
    return PaymentProviderError(message, retryable=retryable, code=exc.code)


class StripeGateway:
    """The Stripe calls billing makes. Disabled (every call raises
    :class:`PaymentsDisabled`) when ``secret_key`` is empty."""

    def __init__(
        self,
        secret_key: str | None,
        api_base: str | None = None,
        *,
        timeout: float = 20.0,
        max_network_retries: int = 2,
    ) -> None:
        self.enabled = bool(secret_key)
        self._http: stripe.AIOHTTPClient | None = None
        self._client: stripe.StripeClient | None = None
        if secret_key:
            self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout))
            self._client = stripe.StripeClient(
                secret_key,
                base_addresses={"api": api_base.rstrip("/")} if api_base else None,
                max_network_retries=max_network_retries,
                http_client=self._http,
            )
        self._used = False

    def _require(self) -> stripe.StripeClient:
        if self._client is None:
            raise PaymentsDisabled()
        self._used = True
        return self._client

    async def close(self) -> None:
        """Close the HTTP session (if a call ever opened one)."""
        if self._http is not None and self._used:
            await self._http.close_async()  # type: ignore[no-untyped-call]

    async def create_payment_intent(
        self,
        *,
        purchase_id: str,
        user_id: int,
        package: str,
        tokens: int,
        amount_cents: int,
        currency: str,
    ) -> Intent:
        """Create (or, for the same ``purchase_id``, return again) the purchase's intent."""
        client = self._require()
        try:
            pi = await client.v1.payment_intents.create_async(
                {
                    "amount": amount_cents,
                    "currency": currency,
                    "automatic_payment_methods": {"enabled": True},
                    "metadata": {
                        "purchase_id": purchase_id,
                        "user_id": str(user_id),
                        "package": package,
                        "tokens": str(tokens),
                    },
                },
                {"idempotency_key": purchase_id},
            )
        except stripe.StripeError as exc:
            log.warning("payment intent creation failed", extra={"purchase": purchase_id})
            raise _error(exc) from None
        return _intent(pi)

    async def retrieve_payment_intent(self, intent_id: str) -> Intent:
        client = self._require()
        try:
            pi = await client.v1.payment_intents.retrieve_async(intent_id)
        except stripe.StripeError as exc:
            raise _error(exc) from None
        return _intent(pi)

    async def create_transfer(
        self,
        *,
        amount_cents: int,
        currency: str,
        destination: str,
        idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> TransferReceipt:
        """Send ``amount_cents`` to a connected account; the same key never pays twice."""
        client = self._require()
        try:
            transfer = await client.v1.transfers.create_async(
                {
                    "amount": amount_cents,
                    "currency": currency,
                    "destination": destination,
                    "transfer_group": idempotency_key,
                    "metadata": dict(metadata),
                },
                {"idempotency_key": idempotency_key},
            )
        except stripe.StripeError as exc:
            log.warning("transfer failed", extra={"key": idempotency_key, "error": repr(exc)})
            raise _error(exc) from None
        return _receipt(transfer)

    async def find_transfer(self, transfer_group: str) -> TransferReceipt | None:
        """The transfer made under ``transfer_group``, if any (idempotency keys expire
        after 24 hours; the group does not)."""
        client = self._require()
        try:
            found = await client.v1.transfers.list_async(
                {"transfer_group": transfer_group, "limit": 1}
            )
        except stripe.StripeError as exc:
            raise _error(exc) from None
        return _receipt(found.data[0]) if found.data else None


def _receipt(transfer: stripe.Transfer) -> TransferReceipt:
    dest = transfer.destination
    return TransferReceipt(
        id=transfer.id,
        amount=transfer.amount,
        currency=transfer.currency,
        destination=dest if isinstance(dest, str) or dest is None else dest.id,
    )


def _intent(pi: stripe.PaymentIntent) -> Intent:
    metadata = pi.metadata.to_dict() if pi.metadata is not None else {}
    return Intent(
        id=pi.id,
        client_secret=pi.client_secret or "",
        amount=pi.amount,
        currency=pi.currency,
        status=str(pi.status),
        metadata={str(k): str(v) for k, v in metadata.items()},
    )


# --- webhook events ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StripeEvent:
    """The fields of a webhook event billing acts on.

    ``intent`` / ``charge`` / ``dispute`` are ids; ``amount`` is the object's
    amount in cents; ``refunded`` is a Charge's cumulative ``amount_refunded``;
    ``status`` the object's status; ``metadata`` a PaymentIntent's metadata.
    """

    id: str
    type: str
    object_id: str | None
    intent: str | None = None
    charge: str | None = None
    dispute: str | None = None
    amount: int = 0
    currency: str = ""
    refunded: int = 0
    status: str = ""
    message: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


def _str(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])  # an expanded object
    return None


def _int(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedEvent(f"expected a non-negative integer amount, got {value!r}")
    return value


def parse_event(raw: Any) -> StripeEvent:
    """Read a decoded webhook body; raises :class:`MalformedEvent` if it is not one."""
    if not isinstance(raw, Mapping) or raw.get("object") != "event":
        raise MalformedEvent("not a Stripe event object")
    event_id, event_type = raw.get("id"), raw.get("type")
    data = raw.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
        raise MalformedEvent("event without id or type")
    if not isinstance(obj, Mapping):
        raise MalformedEvent("event without data.object")
    kind = obj.get("object")
    base: dict[str, Any] = {"id": event_id, "type": event_type, "object_id": _str(obj.get("id"))}
    if kind == "payment_intent":
        metadata = obj.get("metadata") or {}
        error = obj.get("last_payment_error")
        return StripeEvent(
            **base,
            intent=_str(obj.get("id")),
            charge=_str(obj.get("latest_charge")),
            amount=_int(obj.get("amount")),
            currency=str(obj.get("currency") or ""),
            status=str(obj.get("status") or ""),
            message=str(error.get("message") or "") if isinstance(error, Mapping) else "",
            metadata={str(k): str(v) for k, v in metadata.items()}
            if isinstance(metadata, Mapping)
            else {},
        )
    if kind == "charge":
        return StripeEvent(
            **base,
            intent=_str(obj.get("payment_intent")),
            charge=_str(obj.get("id")),
            amount=_int(obj.get("amount")),
            currency=str(obj.get("currency") or ""),
            refunded=_int(obj.get("amount_refunded")),
            status=str(obj.get("status") or ""),
        )
    if kind == "dispute":
        return StripeEvent(
            **base,
            intent=_str(obj.get("payment_intent")),
            charge=_str(obj.get("charge")),
            dispute=_str(obj.get("id")),
            amount=_int(obj.get("amount")),
            currency=str(obj.get("currency") or ""),
            status=str(obj.get("status") or ""),
        )
    return StripeEvent(**base)
