"""The socket: framing, encodings, auth deadline and expiry, limits, fan-out to a user."""

from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from client import Client, RequestError
from protocol import events as ev
from protocol.codes import CloseCode
from protocol.results import Balance
from tests.conftest import RunningServer, register_user, wait_closed


async def test_hello_then_auth_deadline_closes_with_4000(server: RunningServer) -> None:
    started = time.monotonic()
    async with server.connect(reconnect=False) as client:
        assert client.hello is not None
        assert client.hello.auth_deadline_ms == 5000
        assert client.hello.encoding == "json"
        assert await wait_closed(client, timeout=15) == CloseCode.AUTH_DEADLINE
    assert time.monotonic() - started >= 4.5


async def test_requests_before_auth_are_refused_but_socket_lives(server: RunningServer) -> None:
    async with server.connect(reconnect=False) as client:
        with pytest.raises(RequestError) as refused:
            await client.request("balance.get")
        assert refused.value.code == "AUTH_REQUIRED"
        assert (await client.request("ping")).server_time > 0


async def test_malformed_frames_get_errors_and_the_socket_survives(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.connect(user.access_token) as client:
        await client.send_raw("this is not json")
        error = await client.next_event(ev.Error)
        assert isinstance(error, ev.Error)
        assert error.re is None and error.error.code == "MALFORMED_FRAME"
        assert error.error.request_id
        await client.send_raw('{"type": "teleport", "id": "t1"}')
        error = await client.next_event(ev.Error)
        assert error.re == "t1" and error.error.code == "UNKNOWN_TYPE"
        await client.send_raw('{"type": "me.update", "id": "t2", "avatarUrl": "javascript:x"}')
        error = await client.next_event(ev.Error)
        assert error.re == "t2" and error.error.code == "VALIDATION_ERROR"
        await client.send_raw('{"type": "ping", "id": "t3", "pad": "' + "x" * 100_000 + '"}')
        error = await client.next_event(ev.Error)
        assert error.error.code == "FRAME_TOO_LARGE"
        assert (await client.request("ping")).server_time > 0


async def test_two_mib_frame_closes_1009_and_others_keep_working(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.connect(user.access_token) as bystander:
        async with server.connect(user.access_token, reconnect=False) as offender:
            await offender.send_raw("x" * (2 * 1024 * 1024))
            assert await wait_closed(offender) == CloseCode.MESSAGE_TOO_BIG
        assert (await bystander.request("balance.get")).spendable == 0


async def test_msgpack_subprotocol(server: RunningServer) -> None:
    user = await register_user(server)
    async with server.connect(user.access_token, encoding="msgpack") as client:
        assert client.hello is not None and client.hello.encoding == "msgpack"
        assert (await client.request("ping")).server_time > 0
        balance = await client.request("balance.get")
        assert isinstance(balance, Balance)
        await client.send_raw(msgspec.msgpack.encode({"type": "zap", "id": "m1"}))
        error = await client.next_event(ev.Error)
        assert error.re == "m1" and error.error.code == "UNKNOWN_TYPE"


async def test_unsupported_subprotocol_closes_4501(server: RunningServer) -> None:
    async with ws_connect(server.ws_url, subprotocols=["digis.v9.json"]) as ws:  # type: ignore[list-item]
        with pytest.raises(Exception):
            while True:
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == CloseCode.UNSUPPORTED_PROTOCOL


async def test_origin_is_checked_for_browsers(server: RunningServer) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with Client.connect(server.ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
    async with Client.connect(server.ws_url, origin="http://localhost:8080") as client:
        assert (await client.request("ping")).server_time > 0


async def test_token_expiry_warns_then_closes_4001(server: RunningServer) -> None:
    user = await register_user(server)
    ttl = server.services.tokens.ttl
    token, expires = server.services.tokens.issue(user.id, "fan", now=time.time() - ttl + 2)
    async with server.connect(token, reconnect=False) as client:
        warning = await client.next_event(ev.AuthExpiring, timeout=5)
        assert isinstance(warning, ev.AuthExpiring)
        assert warning.expires_at == expires and 0 <= warning.seconds_left <= 2
        assert await wait_closed(client) == CloseCode.TOKEN_EXPIRED


async def test_auth_refresh_moves_the_expiry(server: RunningServer) -> None:
    user = await register_user(server)
    ttl = server.services.tokens.ttl
    short, short_expiry = server.services.tokens.issue(user.id, "fan", now=time.time() - ttl + 30)
    async with server.connect(short) as client:
        fresh, fresh_expiry = server.services.tokens.issue(user.id, "fan")
        result = await client.request("auth.refresh", token=fresh)
        assert result.expires_at == fresh_expiry > short_expiry
        (conn,) = server.services.hub.sockets(user.id)
        assert conn.user is not None and conn.user.expires_at == fresh_expiry
        other = await register_user(server)
        with pytest.raises(RequestError) as refused:
            await client.request("auth.refresh", token=other.access_token)
        assert refused.value.code == "FORBIDDEN"


async def test_events_for_a_user_reach_all_their_sockets(server: RunningServer) -> None:
    user = await register_user(server)
    other = await register_user(server)
    async with (
        server.connect(user.access_token) as phone,
        server.connect(user.access_token, encoding="msgpack") as browser,
        server.connect(other.access_token) as stranger,
    ):
        balance = Balance(balance=5, held=0, spendable=5)
        sent = server.services.hub.send_to_user(user.id, ev.BalanceUpdated(balance=balance))
        assert sent == 2
        for client in (phone, browser):
            event = await client.next_event(ev.BalanceUpdated)
            assert isinstance(event, ev.BalanceUpdated) and event.balance == balance
        assert (await stranger.request("ping")).server_time > 0
        assert not [e for e in stranger.drain_events() if isinstance(e, ev.BalanceUpdated)]


async def test_socket_cap_per_user(make_server) -> None:
    server = await make_server(max_sockets_per_user=2)
    user = await register_user(server)
    async with server.connect(user.access_token), server.connect(user.access_token):
        third = Client(server.ws_url, None, reconnect=False)
        await third.open()
        try:
            with pytest.raises(RequestError) as refused:
                await third.request("auth", token=user.access_token)
            assert refused.value.code == "RATE_LIMIT_EXCEEDED"
            assert await wait_closed(third) == CloseCode.CONNECTION_LIMIT
        finally:
            await third.close()


async def test_profile_get_and_update(server: RunningServer) -> None:
    user = await register_user(server, role="creator")
    async with server.connect(user.access_token) as client:
        me = await client.request("me.get")
        assert (me.id, me.email, me.role) == (user.id, user.email, "creator")
        text = "<script>alert('x')</script> '; DROP TABLE users; -- \u0007"
        updated = await client.request("me.update", bio=text, display_name="Star")
        assert updated.bio == text and updated.display_name == "Star"
        assert (await client.request("me.get")).bio == text


async def test_sdk_request_lost_mid_send_leaves_no_unretrieved_future(
    server: RunningServer,
) -> None:
    """The reader fails a pending request while its send fails too: one ConnectionLost, and
    no "Future exception was never retrieved" from asyncio afterwards."""
    import gc

    from websockets.exceptions import ConnectionClosedError
    from websockets.frames import Close

    from client.sdk import ConnectionLost

    user = await register_user(server)
    reported: list[dict] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with server.connect(user.access_token, reconnect=False) as client:
            closed = Close(1012, "server restarting")

            async def failing_send(_data: object) -> None:
                client._fail_pending(ConnectionLost(1012, "server restarting"))
                raise ConnectionClosedError(closed, None)

            client._ws.send = failing_send  # type: ignore[union-attr]
            with pytest.raises(ConnectionLost):
                await client.request("ping")
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))]
