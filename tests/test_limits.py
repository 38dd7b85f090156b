"""Abuse limits and the HTTP surface's hygiene."""

from __future__ import annotations

import asyncio

import aiohttp
import msgspec
import pytest
from websockets.exceptions import InvalidStatus

from client import Client, RequestError
from protocol import events as ev
from protocol import requests as rq
from protocol.codes import CloseCode
from tests.conftest import RunningServer, quick_user


async def test_request_flood_is_refused_then_closed_4003(server: RunningServer) -> None:
    user = await quick_user(server)
    client = Client(server.ws_url, user.access_token, reconnect=False)
    await client.open()
    try:
        for i in range(400):
            await client.send_raw(client.codec.encode(rq.Ping(id=f"p{i}")).decode())
        errors = []
        async with asyncio.timeout(15):
            async for event in client.events():
                if isinstance(event, ev.Error):
                    errors.append(event)
        codes = {e.error.code for e in errors}
        assert "RATE_LIMIT_EXCEEDED" in codes and codes <= {
            "RATE_LIMIT_EXCEEDED",
            "TOO_MANY_PENDING",
        }
        limited = [e for e in errors if e.error.code == "RATE_LIMIT_EXCEEDED"]
        assert all(e.error.retry_after_ms and e.error.retry_after_ms > 0 for e in limited)
        assert client.close_code == CloseCode.RATE_LIMITED
    finally:
        await client.close()


async def test_a_short_burst_is_refused_but_not_closed(server: RunningServer) -> None:
    user = await quick_user(server)
    async with server.connect(user.access_token) as client:
        results: list[object] = []
        for _ in range(6):  # 120 pings, 20 in flight at a time (under the pending cap)
            results += await asyncio.gather(
                *(client.request("ping") for _ in range(20)), return_exceptions=True
            )
        refused = [r for r in results if isinstance(r, RequestError)]
        assert refused and len(refused) < 50
        assert all(r.code == "RATE_LIMIT_EXCEEDED" for r in refused)
        await asyncio.sleep(1.0)  # let the bucket refill: a polite client carries on
        assert (await client.request("ping")).server_time > 0
        assert client.connected


async def test_too_many_pending_requests(server: RunningServer) -> None:
    user = await quick_user(server)
    async with server.connect(user.access_token) as client:
        (conn,) = server.services.hub.sockets(user.id)
        conn.pending = server.services.settings.max_pending_requests
        with pytest.raises(RequestError) as refused:
            await client.request("balance.get")
        assert refused.value.code == "TOO_MANY_PENDING"
        conn.pending = 0
        assert (await client.request("balance.get")).spendable == 0


async def test_handshake_rate_per_address(make_server) -> None:
    server = await make_server(handshake_rate=0.5, handshake_burst=2)
    first = Client(server.ws_url, None, reconnect=False)
    second = Client(server.ws_url, None, reconnect=False)
    await first.open()
    await second.open()
    try:
        with pytest.raises(InvalidStatus) as refused:
            await Client(server.ws_url, None, reconnect=False).open()
        assert refused.value.response.status_code == 429
        body = msgspec.json.decode(refused.value.response.body)
        assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    finally:
        await first.close()
        await second.close()


async def test_http_errors_use_the_envelope_and_security_headers(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as http:
        for method, path, body, status in (
            ("GET", "/healthz", None, 200),
            ("GET", "/nope", None, 404),
            ("DELETE", "/healthz", None, 405),
            ("POST", "/auth/register", b"x" * (300 * 1024), 413),
            ("POST", "/auth/login", b"[]", 400),
            ("GET", "/ws", None, 400),  # not an upgrade
        ):
            async with http.request(method, server.http_url + path, data=body) as response:
                assert response.status == status, path
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"
                assert "Strict-Transport-Security" not in response.headers
                assert response.headers["X-Request-Id"]
                if status >= 400:
                    envelope = await response.json()
                    assert envelope["type"] == "error"
                    assert envelope["error"]["requestId"] == response.headers["X-Request-Id"]
                    assert "Traceback" not in await response.text()
                if status == 405:
                    assert set(response.headers["Allow"].split(",")) >= {"GET", "HEAD"}
        # refused before the upgrade: the envelope and headers too
        refused = {"Origin": "https://evil.example", "X-Request-Id": "ws-trace-1"}
        async with http.get(server.ws_url.replace("ws://", "http://"), headers=refused) as response:
            assert response.status == 403
            assert response.headers["X-Frame-Options"] == "DENY"
            assert (await response.json())["error"] == {
                "code": "FORBIDDEN",
                "message": "origin not allowed",
                "requestId": "ws-trace-1",
            }
        headers = {"X-Forwarded-Proto": "https", "X-Request-Id": "trace-me-123"}
        async with http.get(server.http_url + "/healthz", headers=headers) as response:
            assert response.headers["Strict-Transport-Security"].startswith("max-age=")
            assert response.headers["X-Request-Id"] == "trace-me-123"


async def test_slow_consumer_is_closed_and_others_get_everything(make_server) -> None:
    import socket

    from websockets.asyncio.client import connect as ws_connect

    from protocol.base import UserRef
    from protocol.events import SessionChat
    from server.sessions.effects import Emit

    server = await make_server(send_buffer_bytes=256 * 1024)
    creator = await quick_user(server, "creator")
    good, slow = await quick_user(server), await quick_user(server)
    async with server.connect(creator.access_token) as c, server.connect(good.access_token) as g:
        session = (await c.request("stream.start", title="Firehose")).stream.session
        await g.request("stream.join", session=session)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect((server.server.host, server.server.port))
        ws = await ws_connect(server.ws_url, sock=raw, max_queue=1)
        hello = await ws.recv()
        assert b"hello" in (hello if isinstance(hello, bytes) else hello.encode())
        await ws.send(f'{{"type":"auth","id":"a","token":"{slow.access_token}"}}')
        await ws.recv()
        await ws.send(f'{{"type":"stream.join","id":"j","session":"{session}"}}')
        await ws.recv()
        actor = server.services.sessions.streams[session]
        someone = UserRef(id=creator.id, username=creator.username)
        text = "x" * 4000
        for i in range(2500):  # ~10 MB: more than any kernel buffer absorbs
            event = SessionChat(session=session, id=10_000 + i, user=someone, text=text, ts=0.0)
            actor.tell(lambda a, now, e=event: a.deliver(Emit(e, None, False)))
            if i % 10 == 0:
                await asyncio.sleep(0.002)  # a steady stream that readers can keep up with
        async with asyncio.timeout(10):
            while len(actor.subscribers) > 2:
                await asyncio.sleep(0.05)
        assert server.services.metrics.slow_consumers._value.get() == 1
        received = 0
        async with asyncio.timeout(20):
            while received < 2500:
                event = await g.next_event(SessionChat)
                received += 1
        assert received == 2500
        assert (await g.request("ping")).server_time > 0
        await ws.close()
        await c.request("stream.end", session=session)
