"""Register, login, refresh rotation, and refusal of bad or tampered tokens."""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import jwt
import pytest

from client import RequestError
from protocol.codes import CloseCode
from storage import users
from tests.conftest import RunningServer, register_user, wait_closed


async def post(server: RunningServer, path: str, body: object) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.http_url + path, json=body) as response:
            return response.status, await response.json()


async def test_register_returns_tokens_and_refuses_duplicates(server: RunningServer) -> None:
    status, body = await post(
        server,
        "/auth/register",
        {"email": "Dup@Example.com", "username": "dup_user", "password": "long enough pw"},
    )
    assert status == 201
    assert body["user"]["username"] == "dup_user" and body["user"]["role"] == "fan"
    assert body["accessToken"] and body["refreshToken"]
    status, body = await post(
        server,
        "/auth/register",
        {"email": "dup@example.com", "username": "other_user", "password": "long enough pw"},
    )
    assert status == 409
    assert body["error"]["code"] == "CONFLICT" and "email" in body["error"]["message"]
    status, body = await post(
        server,
        "/auth/register",
        {"email": "new@example.com", "username": "DUP_USER", "password": "long enough pw"},
    )
    assert status == 409 and "username" in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "username": "ok_name", "password": "long enough"},
        {"email": "a@b.co", "username": "x", "password": "long enough"},
        {"email": "a@b.co", "username": "ok_name", "password": "short"},
        {"email": "a@b.co", "username": "ok_name", "password": "long enough", "role": "admin"},
        {"username": "ok_name", "password": "long enough"},
    ],
)
async def test_register_validates(server: RunningServer, body: dict) -> None:
    status, reply = await post(server, "/auth/register", body)
    assert status == 400
    assert reply["type"] == "error" and reply["error"]["code"] == "VALIDATION_ERROR"
    assert reply["error"]["requestId"]
    async with server.services.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM users") == 0


async def test_malformed_json_body(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.http_url + "/auth/login", data=b"{nope") as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "VALIDATION_ERROR"


async def test_login_wrong_password_and_unknown_email(server: RunningServer) -> None:
    user = await register_user(server)
    status, body = await post(server, "/auth/login", {"email": user.email, "password": "wrong!!!"})
    assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, body = await post(server, "/auth/login", {"email": "nobody@x.io", "password": "x" * 9})
    assert status == 401 and body["error"]["code"] == "INVALID_CREDENTIALS"
    status, body = await post(
        server, "/auth/login", {"email": user.email.upper(), "password": user.password}
    )
    assert status == 200 and body["user"]["id"] == user.id


async def test_refresh_rotates_and_reuse_revokes_the_family(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.auth() as auth:
        second = await auth.refresh(user.refresh_token)
        assert second.refresh_token != user.refresh_token
        third = await auth.refresh(second.refresh_token)
        # Replaying an already-used token is refused ...
        with pytest.raises(RequestError) as replay:
            await auth.refresh(user.refresh_token)
        assert replay.value.code == "INVALID_CREDENTIALS"
        # ... and revokes the whole family, including the newest token.
        with pytest.raises(RequestError) as revoked:
            await auth.refresh(third.refresh_token)
        assert revoked.value.code == "INVALID_CREDENTIALS"
        # A fresh login starts a new family that works.
        fresh = await auth.login(user.email, user.password)
        assert (await auth.refresh(fresh.refresh_token)).user.id == user.id
        with pytest.raises(RequestError):
            await auth.refresh("not-a-real-refresh-token")


def _forge_none_token(user_id: int) -> str:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "admin",
        "typ": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def _token(secret: str, user_id: int, **overrides: object) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "role": "fan",
        "typ": "access",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_bad_tokens_are_refused_on_the_socket(server: RunningServer) -> None:
    user = await register_user(server)
    secret = server.services.settings.jwt_secret
    assert secret
    now = int(time.time())
    bad = {
        "alg none": _forge_none_token(user.id),
        "wrong key": _token("another-secret-" + "y" * 40, user.id),
        "expired": _token(secret, user.id, iat=now - 1000, nbf=now - 1000, exp=now - 10),
        "not yet valid": _token(secret, user.id, nbf=now + 600),
        "unknown user": _token(secret, 999_999),
        "refresh type": _token(secret, user.id, typ="refresh"),
        "tampered": user.access_token[:-3] + ("AAA" if user.access_token[-3:] != "AAA" else "BBB"),
    }
    for label, token in bad.items():
        async with server.connect() as client:
            with pytest.raises(RequestError) as refused:
                await client.request("auth", token=token)
            assert refused.value.code == "AUTH_REQUIRED", label
            with pytest.raises(RequestError) as still_anonymous:
                await client.request("balance.get")
            assert still_anonymous.value.code == "AUTH_REQUIRED", label
            assert (await client.request("ping")).server_time > 0  # socket survives


async def test_bad_bearer_header_is_refused_before_upgrade(server: RunningServer) -> None:
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with server.connect(_forge_none_token(1), auth_in_header=True, reconnect=False):
            pass
    assert refused.value.response.status_code == 401


async def test_bearer_header_authenticates(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.connect(user.access_token, auth_in_header=True) as client:
        assert (await client.request("me.get")).id == user.id


async def test_disabled_user_is_refused(server: RunningServer) -> None:
    user = await register_user(server)
    await users.set_status(server.services.pool, user.id, "disabled")
    async with server.connect(reconnect=False) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("auth", token=user.access_token)
        assert refused.value.code == "AUTH_REQUIRED"
        assert await wait_closed(client) == CloseCode.ACCOUNT_DISABLED
    status, body = await post(
        server, "/auth/login", {"email": user.email, "password": user.password}
    )
    assert status == 401 and body["error"]["code"] == "AUTH_REQUIRED"
