"""A local stand-in for the few Stripe endpoints Digis calls, plus webhook helpers.

:class:`StripeStandin` is an aiohttp server on 127.0.0.1 answering
``POST/GET /v1/payment_intents`` and ``POST/GET /v1/transfers`` with Stripe's
object shapes (the PaymentIntent from the copied fixture, a Transfer as in
Stripe's API reference) and Stripe's error envelope. Like Stripe it requires
a bearer secret key, keeps the first response for each ``Idempotency-Key``
(same key and parameters: the same object again, ``Idempotent-Replayed:
true``; other parameters: 400 ``idempotency_error``), and can be told to fail
the next call to an endpoint. Every request is recorded.

Webhook helpers build events from ``loadtest/fixtures/stripe`` with our ids and
sign them exactly as Stripe does (``stripe.WebhookSignature``).
"""

from __future__ import annotations

import copy
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from aiohttp import web
from aiohttp.test_utils import TestServer

FIXTURES = Path(__file__).with_name("fixtures") / "stripe"
SECRET_KEY = "sk_test_digis"  # noqa: S105 - the stand-in's own test key
WEBHOOK_SECRET = "whsec_test_digis"  # noqa: S105 - a test signing secret
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    """A Stripe-looking id, unique in this test process."""
    return f"{prefix}_{secrets.token_hex(6)}{next(_ids):06d}"


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of a fixture event (``payment_intent.succeeded`` ...)."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return data


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    authorization: str


@dataclass
class _Failure:
    status: int
    type: str
    code: str | None
    message: str
    after_effect: bool


def _unflatten(form: Any) -> dict[str, Any]:
    """Stripe's form encoding (``metadata[k]=v``) back into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in form.items():
        parts = key.replace("]", "").split("[")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _error(status: int, type_: str, message: str, code: str | None = None) -> web.Response:
    body = {
        "error": {
            "type": type_,
            "code": code,
            "message": message,
            "param": None,
            "doc_url": f"https://stripe.com/docs/error-codes/{code}" if code else None,
        }
    }
    return web.json_response(body, status=status, headers={"Request-Id": new_id("req")})


@dataclass
class StripeStandin:
    requests: list[Recorded] = field(default_factory=list)
    intents: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _replies: dict[tuple[str, str], tuple[dict[str, Any], int, bytes]] = field(default_factory=dict)
    _failures: dict[str, list[_Failure]] = field(default_factory=dict)
    _server: TestServer | None = None

    # --- lifecycle and control ---------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/payment_intents", self._create_intent)
        app.router.add_get("/v1/payment_intents/{id}", self._get_intent)
        app.router.add_post("/v1/transfers", self._create_transfer)
        app.router.add_get("/v1/transfers", self._list_transfers)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            await self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    def fail_next(
        self,
        path: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        code: str | None = "insufficient_funds",
        message: str = "You have insufficient available funds in your Stripe account.",
        after_effect: bool = False,
    ) -> None:
        """Make the next POST to ``path`` fail with this Stripe error.

        With ``after_effect`` the call takes effect (and its key remembers the
        success) but this one answer is the error: a response lost on the way.
        """
        failure = _Failure(status, type, code, message, after_effect)
        self._failures.setdefault(path, []).append(failure)

    def calls(self, method: str, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path == path]

    # --- plumbing -------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded | web.Response:
        params = _unflatten(await request.post()) if request.method == "POST" else {}
        if request.method == "GET":
            params = dict(request.query)
        recorded = Recorded(
            request.method,
            request.path,
            params,
            request.headers.get("Idempotency-Key"),
            request.headers.get("Authorization", ""),
        )
        self.requests.append(recorded)
        if not recorded.authorization.startswith("Bearer sk_"):
            return _error(401, "invalid_request_error", "You did not provide an API key.")
        return recorded

    async def _idempotent(self, request: web.Request, create: Any) -> web.Response:
        recorded = await self._record(request)
        if isinstance(recorded, web.Response):
            return recorded
        key = recorded.idempotency_key or new_id("auto")
        stored = self._replies.get((request.path, key))
        if stored is not None:
            params, status, body = stored
            if params != recorded.params:
                return _error(
                    400,
                    "idempotency_error",
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                )
            return web.Response(
                body=body,
                status=status,
                content_type="application/json",
                headers={"Idempotent-Replayed": "true", "Request-Id": new_id("req")},
            )
        failures = self._failures.get(request.path)
        failure = failures.pop(0) if failures else None
        if failure is None or failure.after_effect:
            response = web.json_response(
                create(recorded.params), headers={"Request-Id": new_id("req")}
            )
        else:
            response = _error(failure.status, failure.type, failure.message, failure.code)
        assert isinstance(response.body, bytes)
        self._replies[(request.path, key)] = (recorded.params, response.status, response.body)
        if failure is not None and failure.after_effect:
            return _error(failure.status, failure.type, failure.message, failure.code)
        return response

    # --- endpoints -------------------------------------------------------------------

    async def _create_intent(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_intent)

    def _new_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        pi = fixture("payment_intent.succeeded")["data"]["object"]
        pi_id = new_id("pi")
        pi.update(
            id=pi_id,
            amount=int(params["amount"]),
            amount_received=0,
            currency=params["currency"],
            metadata=params.get("metadata", {}),
            client_secret=f"{pi_id}_secret_{secrets.token_hex(12)}",
            created=int(time.time()),
            latest_charge=None,
            payment_method=None,
            status="requires_payment_method",
        )
        self.intents[pi_id] = pi
        created: dict[str, Any] = pi
        return created

    async def _get_intent(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if isinstance(recorded, web.Response):
            return recorded
        pi = self.intents.get(request.match_info["id"])
        if pi is None:
            return _error(
                404,
                "invalid_request_error",
                f"No such payment_intent: '{request.match_info['id']}'",
                "resource_missing",
            )
        return web.json_response(pi)

    async def _create_transfer(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_transfer)

    def _new_transfer(self, params: dict[str, Any]) -> dict[str, Any]:
        tr_id = new_id("tr")
        transfer = {
            "id": tr_id,
            "object": "transfer",
            "amount": int(params["amount"]),
            "amount_reversed": 0,
            "balance_transaction": new_id("txn"),
            "created": int(time.time()),
            "currency": params["currency"],
            "description": None,
            "destination": params["destination"],
            "destination_payment": new_id("py"),
            "livemode": False,
            "metadata": params.get("metadata", {}),
            "reversals": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/transfers/{tr_id}/reversals",
            },
            "reversed": False,
            "source_transaction": None,
            "source_type": "card",
            "transfer_group": params.get("transfer_group"),
        }
        self.transfers[tr_id] = transfer
        return transfer

    async def _list_transfers(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if isinstance(recorded, web.Response):
            return recorded
        group = request.query.get("transfer_group")
        found = [
            t for t in self.transfers.values() if group is None or t["transfer_group"] == group
        ]
        limit = int(request.query.get("limit", "10"))
        return web.json_response(
            {
                "object": "list",
                "data": found[:limit],
                "has_more": len(found) > limit,
                "url": "/v1/transfers",
            }
        )


# --- webhook events -------------------------------------------------------------------


def intent_event(
    kind: str,
    *,
    intent: str,
    amount: int = 1099,
    metadata: dict[str, str] | None = None,
    charge: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``payment_intent.succeeded`` or ``payment_intent.payment_failed`` for ``intent``."""
    event = fixture(kind)
    obj = event["data"]["object"]
    obj.update(id=intent, amount=amount, metadata=metadata or {})
    obj["client_secret"] = f"{intent}_secret_x"
    if kind.endswith("succeeded"):
        obj.update(amount_received=amount, latest_charge=charge or new_id("ch"))
    event["id"] = event_id or new_id("evt")
    return event


def refund_event(
    *, intent: str, charge: str, refunded: int, amount: int = 1099, event_id: str | None = None
) -> dict[str, Any]:
    """``charge.refunded`` with cumulative ``amount_refunded`` = ``refunded``."""
    event = fixture("charge.refunded")
    obj = event["data"]["object"]
    obj.update(
        id=charge,
        payment_intent=intent,
        amount=amount,
        amount_captured=amount,
        amount_refunded=refunded,
        refunded=refunded >= amount,
    )
    event["id"] = event_id or new_id("evt")
    return event


def dispute_event(
    *,
    intent: str,
    charge: str,
    dispute: str,
    status: str = "needs_response",
    amount: int = 1099,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``charge.dispute.created`` (status needs_response) or ``charge.dispute.closed``
    (status won / lost), built on the dispute fixture."""
    event = fixture("charge.dispute.created")
    obj = event["data"]["object"]
    obj.update(id=dispute, charge=charge, payment_intent=intent, amount=amount, status=status)
    if status in ("won", "lost", "warning_closed"):
        event["type"] = "charge.dispute.closed"
    event["id"] = event_id or new_id("evt")
    return event


def with_new_id(event: dict[str, Any]) -> dict[str, Any]:
    """The same event content delivered under a fresh event id."""
    copied = copy.deepcopy(event)
    copied["id"] = new_id("evt")
    return copied


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header Stripe would send for ``payload``."""
    header: str = stripe.WebhookSignature.generate_signature_header(
        payload.decode("utf-8"), secret, timestamp=timestamp
    )
    return header
