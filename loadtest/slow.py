"""Viewers that stop reading: slow consumers the server must drop, not wait for.

Each slow viewer is a raw socket with a tiny receive buffer that completes
the WebSocket handshake (authenticated with a Bearer header), joins a
stream, and then never reads again. The server should close it with 4002
once its send buffer passes ``DIGIS_SEND_BUFFER_BYTES``, and the other
viewers' latency should not notice.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from urllib.parse import urlsplit


def _masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    return header + mask + body


class SlowViewer:
    """One never-reading viewer (see module docstring)."""

    def __init__(self) -> None:
        self.writer: asyncio.StreamWriter | None = None

    async def open(self, base_url: str, token: str, session: str) -> None:
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.setblocking(False)
        await asyncio.get_running_loop().sock_connect(raw, (host, port))
        reader, writer = await asyncio.open_connection(sock=raw, limit=4096)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"slow viewer refused: {head[:80]!r}")
        join = {"type": "stream.join", "id": "slow", "session": session}
        writer.write(_masked_text(json.dumps(join).encode()))
        await writer.drain()
        self.writer = writer  # from here on, nothing is read

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
            self.writer = None
