"""The server-wide heartbeat: live peers stay, dead peers are dropped."""

from __future__ import annotations

import asyncio

from loadtest.wsclient import upgrade_request
from tests.conftest import quick_user


async def test_dead_peer_is_dropped_and_live_peer_stays(make_server) -> None:
    server = await make_server(heartbeat=0.5)
    user = await quick_user(server)
    async with server.connect(user.access_token) as live:
        host, port, request, _accept = upgrade_request(server.ws_url)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        assert server.services.hub.connection_count == 2
        received = b""
        async with asyncio.timeout(10):  # never answer the pings: dropped
            while chunk := await reader.read(4096):
                received += chunk
        assert b"\x89\x00" in received  # it was pinged before being dropped
        assert server.services.hub.connection_count == 1
        await asyncio.sleep(1.5)  # three heartbeat intervals: the live client answers
        assert live.connected and (await live.request("ping")).server_time > 0
        writer.close()
