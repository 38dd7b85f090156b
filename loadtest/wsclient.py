"""A lean client-side WebSocket (RFC 6455) on a bare ``asyncio.Protocol``.

Why not the ``websockets`` library the SDK uses: a load generator on a
two-core box must receive far faster than the server under test can send,
or it measures itself. This protocol does only what a benchmark client
needs: the HTTP upgrade, unfragmented-frame parsing straight out of
``data_received`` (several frames per call, no task per message), masked
client frames, answering pings and the close handshake. Every frame is
handed to a synchronous callback together with one receive timestamp per
read, so per-frame cost is a few header bytes and a slice.

Contract: :func:`open_socket` returns once the server answered ``101`` (or
raises :class:`HandshakeRefused` with the HTTP status, or ``OSError`` /
``TimeoutError``). After that the callback sees every text/binary payload
in order; ``on_close(code)`` is called exactly once when the socket is gone.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")
#: Close code recorded when the TCP connection ends without a close frame.
ABNORMAL = 1006

MessageCallback = Callable[[bytes, float], None]
CloseCallback = Callable[[int], None]
OpenCallback = Callable[["WsProtocol"], None]


class HandshakeRefused(Exception):
    """The server answered the upgrade with an HTTP status other than 101."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"HTTP {status} {reason}".strip())
        self.status = status


def mask_payload(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the repeating 4-byte ``key`` (RFC 6455 section 5.3)."""
    size = len(payload)
    if not size:
        return payload
    stream = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(size, "big")


def client_frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """One complete, masked, unfragmented client frame."""
    size = len(payload)
    first = 0x80 | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = bytes((first, 0x80 | 126)) + _U16.pack(size)
    else:
        header = bytes((first, 0x80 | 127)) + _U64.pack(size)
    key = random.getrandbits(32).to_bytes(4, "big")
    return header + key + mask_payload(payload, key)


class WsProtocol(asyncio.Protocol):
    """The socket: upgrade, then parse frames and hand payloads to ``on_message``."""

    def __init__(
        self,
        request: bytes,
        expected_accept: bytes,
        on_message: MessageCallback,
        on_close: CloseCallback,
        on_open: OpenCallback | None = None,
    ) -> None:
        self._request = request
        self._on_open = on_open
        self._expected_accept = expected_accept
        self.on_message = on_message
        self.on_close = on_close
        self.transport: asyncio.Transport | None = None
        self.upgraded: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self.subprotocol: str | None = None
        self.close_code: int | None = None
        #: True once this side started closing (``close``/``abort``).
        self.local_close = False
        self._head = b""
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._open = False

    # --- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if not self._open:
            data = self._handshake(data)
            if not data:
                return
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        self._frames(data, time.time())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionResetError("closed during the upgrade"))
        self._finish(ABNORMAL)

    # --- sending -------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open and self.close_code is None and self.transport is not None

    def send(self, payload: bytes, opcode: int = OP_TEXT) -> bool:
        """Write one masked frame; False if the socket is not open."""
        transport = self.transport
        if not self.is_open or transport is None or transport.is_closing():
            return False
        transport.write(client_frame(payload, opcode))
        return True

    def close(self, code: int = 1000) -> None:
        """Send a close frame and drop the connection (no wait for the echo)."""
        self.local_close = True
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.is_open:
            transport.write(client_frame(_U16.pack(code), OP_CLOSE))
        transport.close()

    def abort(self) -> None:
        self.local_close = True
        if self.transport is not None:
            self.transport.abort()

    # --- internals -----------------------------------------------------------------

    def _handshake(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > 65536 and not self.upgraded.done():
                self.upgraded.set_exception(HandshakeRefused(0, "oversized response head"))
            return b""
        head, rest = self._head[:end].decode("latin-1"), self._head[end + 4 :]
        self._head = b""
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 101:
            if not self.upgraded.done():
                self.upgraded.set_exception(
                    HandshakeRefused(status, parts[2] if len(parts) > 2 else "")
                )
            if self.transport is not None:
                self.transport.close()
            return b""
        if headers.get("sec-websocket-accept", "").encode() != self._expected_accept:
            if not self.upgraded.done():
                self.upgraded.set_exception(HandshakeRefused(101, "bad Sec-WebSocket-Accept"))
            if self.transport is not None:
                self.transport.abort()
            return b""
        self._open = True
        self.subprotocol = headers.get("sec-websocket-protocol") or None
        if self._on_open is not None:
            self._on_open(self)
        if not self.upgraded.done():
            self.upgraded.set_result(self.subprotocol)
        return rest

    def _frames(self, data: bytes, now: float) -> None:
        pos = 0
        size = len(data)
        while size - pos >= 2:
            first = data[pos]
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = _U16.unpack_from(data, start)[0]
                start += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = _U64.unpack_from(data, start)[0]
                start += 8
            end = start + length
            if end > size:
                break
            pos = end
            opcode = first & 0x0F
            if opcode in (OP_TEXT, OP_BINARY):
                if first & 0x80:
                    self.on_message(data[start:end], now)
                else:
                    self._fragments = [data[start:end]]
            elif opcode == OP_CONT:
                self._fragments.append(data[start:end])
                if first & 0x80:
                    whole, self._fragments = b"".join(self._fragments), []
                    self.on_message(whole, now)
            elif opcode == OP_PING:
                self.send(data[start:end], OP_PONG)
            elif opcode == OP_CLOSE:
                code = _U16.unpack_from(data, start)[0] if length >= 2 else 1005
                self.close(code if code not in (1005, 1006) else 1000)
                self._finish(code)
                return
        if pos < size:
            self._buffer = data[pos:]

    def _finish(self, code: int) -> None:
        if self.close_code is not None:
            return
        self.close_code = code
        self.on_close(code)


def upgrade_request(
    url: str, subprotocol: str | None = None, headers: dict[str, str] | None = None
) -> tuple[str, int, bytes, bytes]:
    """(host, port, request bytes, expected Sec-WebSocket-Accept) for ``ws://`` ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "http"):
        raise ValueError(f"only ws:// (loopback) URLs are supported, got {url!r}")
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    key = base64.b64encode(os.urandom(16))
    accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())  # noqa: S324 (RFC 6455)
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key.decode()}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocol:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    return host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), accept


async def open_socket(
    url: str,
    on_message: MessageCallback,
    on_close: CloseCallback,
    *,
    subprotocol: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    on_open: OpenCallback | None = None,
) -> WsProtocol:
    """Connect and upgrade; raises HandshakeRefused, OSError or TimeoutError.

    ``on_open(protocol)`` runs as soon as the upgrade is accepted, before any
    frame that came with the ``101`` answer is handed to ``on_message``.
    """
    host, port, request, accept = upgrade_request(url, subprotocol, headers)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _transport, protocol = await loop.create_connection(
            lambda: WsProtocol(request, accept, on_message, on_close, on_open), host, port
        )
        try:
            await protocol.upgraded
        except BaseException:
            protocol.abort()
            raise
    return protocol
