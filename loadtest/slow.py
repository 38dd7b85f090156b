"""Viewers that stop reading: slow consumers the server must drop, not wait for.

Each slow viewer is a raw socket with a tiny receive buffer that completes
the WebSocket handshake (authenticated with a Bearer header), joins a
stream, and then never reads again. The server should close it with 4002
once its send buffer passes ``DIGIS_SEND_BUFFER_BYTES``, and the other
viewers' latency should not notice.
"""

from __future__ import annotations

import asyncio
import json
import socket

from loadtest.wsclient import client_frame, upgrade_request


class SlowViewer:
    """One never-reading viewer (see module docstring)."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, base_url: str, token: str, session: str) -> None:
        host, port, request, _accept = upgrade_request(
            base_url.rstrip("/") + "/ws", headers={"Authorization": f"Bearer {token}"}
        )
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (host, port))
        reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"slow viewer refused: {head[:80]!r}")
        join = {"type": "stream.join", "id": "slow", "session": session}
        writer.write(client_frame(json.dumps(join).encode()))
        await writer.drain()
        self.writer = writer  # from here on, nothing is read

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None
