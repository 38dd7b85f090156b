"""Starting a token purchase: socket ``tokens.purchase`` and ``POST /payments/intent``.

Both create a PaymentIntent at the Stripe stand-in (our purchase id as
idempotency key and in the metadata) after recording the pending purchase,
and hand the client secret back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from billing.stripe_gateway import PaymentsDisabled, StripeGateway
from client import RequestError
from loadtest.stripe_standin import SECRET_KEY, StripeStandin
from storage import payments
from tests.conftest import register_user
from tests.money import assert_ledger_consistent

if TYPE_CHECKING:
    from tests.payments_support import MakePayEnv, PayEnv

pytest_plugins = ["tests.payments_support"]


async def test_socket_purchase_creates_an_intent_with_metadata_and_key(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    async with pay_env.running.connect(fan.access_token) as client:
        result = await client.request("tokens.purchase", package="tokens_500")
    assert (result.tokens, result.amount_cents, result.currency) == (500, 4499, "usd")
    (call,) = pay_env.standin.calls("POST", "/v1/payment_intents")
    assert call.idempotency_key == result.purchase
    assert call.params["amount"] == "4499" and call.params["currency"] == "usd"
    assert call.params["metadata"] == {
        "purchase_id": result.purchase,
        "user_id": str(fan.id),
        "package": "tokens_500",
        "tokens": "500",
    }
    intent = pay_env.standin.intents[result.payment_intent]
    assert result.client_secret == intent["client_secret"]
    row = await payments.get_purchase(pay_env.pool, result.purchase)
    assert row is not None
    assert (row.status, row.payment_intent_id, row.user_id) == ("pending", intent["id"], fan.id)
    await assert_ledger_consistent(pay_env.pool)


async def test_http_intent_with_bearer_token(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    status, body = await pay_env.intent(fan.access_token, {"package": "tokens_100"})
    assert status == 200
    assert body["tokens"] == 100 and body["amountCents"] == 999 and body["currency"] == "usd"
    intent = pay_env.standin.intents[body["paymentIntent"]]
    assert body["clientSecret"] == intent["client_secret"]
    assert intent["metadata"]["purchase_id"] == body["purchase"]
    (call,) = pay_env.standin.calls("POST", "/v1/payment_intents")
    assert call.idempotency_key == body["purchase"]
    assert call.authorization == f"Bearer {SECRET_KEY}"


async def test_http_intent_requires_a_valid_token_and_body(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    status, body = await pay_env.intent(None, {"package": "tokens_100"})
    assert status == 401 and body["error"]["code"] == "AUTH_REQUIRED"
    status, body = await pay_env.intent("not-a-token-at-all", {"package": "tokens_100"})
    assert status == 401 and body["error"]["code"] == "AUTH_REQUIRED"
    status, body = await pay_env.intent(fan.access_token, {"pack": "tokens_100"})
    assert status == 400 and body["error"]["code"] == "VALIDATION_ERROR"
    assert pay_env.standin.calls("POST", "/v1/payment_intents") == []


async def test_unknown_package_is_not_found(pay_env: PayEnv) -> None:
    fan = await register_user(pay_env.running)
    async with pay_env.running.connect(fan.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("tokens.purchase", package="tokens_7")
    assert refused.value.code == "NOT_FOUND"
    status, body = await pay_env.intent(fan.access_token, {"package": "nope"})
    assert status == 404 and body["error"]["code"] == "NOT_FOUND"
    assert pay_env.standin.calls("POST", "/v1/payment_intents") == []
    assert await pay_env.pool.fetchval("SELECT count(*) FROM purchases") == 0


async def test_provider_refusal_is_a_payment_error_and_marks_the_purchase_failed(
    pay_env: PayEnv,
) -> None:
    fan = await register_user(pay_env.running)
    pay_env.standin.fail_next(
        "/v1/payment_intents", status=400, code="amount_too_small", message="Amount too small."
    )
    async with pay_env.running.connect(fan.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("tokens.purchase", package="tokens_100")
    assert refused.value.code == "PAYMENT_ERROR" and "Amount too small" in refused.value.message
    row = await pay_env.pool.fetchrow("SELECT status, failure_message FROM purchases")
    assert row is not None and row["status"] == "failed"
    await assert_ledger_consistent(pay_env.pool)


async def test_without_a_secret_key_payments_are_not_configured(make_pay_env: MakePayEnv) -> None:
    env = await make_pay_env(stripe_secret_key=None)
    fan = await register_user(env.running)
    async with env.running.connect(fan.access_token) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("tokens.purchase", package="tokens_100")
    assert refused.value.code == "PAYMENT_ERROR"
    assert refused.value.message == "payments are not configured"
    status, body = await env.intent(fan.access_token, {"package": "tokens_100"})
    assert status == 502 and body["error"]["message"] == "payments are not configured"
    assert env.standin.requests == []


async def test_gateway_same_purchase_id_returns_the_same_intent(
    standin: StripeStandin, quiet_gateway: StripeGateway
) -> None:
    fields = {
        "purchase_id": "pur_same",
        "user_id": 7,
        "package": "tokens_100",
        "tokens": 100,
        "amount_cents": 999,
        "currency": "usd",
    }
    first = await quiet_gateway.create_payment_intent(**fields)  # type: ignore[arg-type]
    again = await quiet_gateway.create_payment_intent(**fields)  # type: ignore[arg-type]
    assert first == again and len(standin.intents) == 1
    fetched = await quiet_gateway.retrieve_payment_intent(first.id)
    assert fetched.metadata["purchase_id"] == "pur_same"
    with pytest.raises(PaymentsDisabled):
        await StripeGateway(None).create_payment_intent(**fields)  # type: ignore[arg-type]
