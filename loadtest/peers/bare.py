"""The ceiling: a bare aiohttp WebSocket broadcast loop.

Every text frame a client sends is read as ``{"text": ...}``; the server
builds ``{"type":"chat","text":...,"ts":...}``, frames it ONCE and writes
the same bytes to every open transport -- no per-socket queue, task or
encoder. That is the least work a Python server on aiohttp can do per
delivery, so Digis' stream fan-out is measured against it.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from collections.abc import Sequence

import msgspec
from aiohttp import WSMsgType, web

from loadtest.peers.runner import parse_args, run_app

_LEN2 = struct.Struct("!BBH")


class _Chat(msgspec.Struct):
    text: str


class _Out(msgspec.Struct):
    type: str
    text: str
    ts: float


_decode = msgspec.json.Decoder(_Chat).decode
_encode = msgspec.json.Encoder().encode
TRANSPORTS = web.AppKey("transports", set[asyncio.Transport])


def text_frame(payload: bytes) -> bytes:
    """An unmasked server text frame (RFC 6455 section 5.2) carrying ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return _LEN2.pack(0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


def broadcast(transports: set[asyncio.Transport], text: str) -> int:
    """Frame one chat line once and write it to every transport; returns writes."""
    frame = text_frame(_encode(_Out("chat", text, time.time())))
    sent = 0
    for transport in transports:
        if not transport.is_closing():
            transport.write(frame)
            sent += 1
    return sent


async def websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(compress=False, autoping=True)
    await ws.prepare(request)
    transport = request.transport
    if transport is None:
        return ws
    transports = request.app[TRANSPORTS]
    transports.add(transport)
    try:
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                try:
                    chat = _decode(message.data)
                except msgspec.MsgspecError:
                    continue
                broadcast(transports, chat.text)
            elif message.type == WSMsgType.ERROR:
                break
    finally:
        transports.discard(transport)
    return ws


def build_app() -> web.Application:
    app = web.Application()
    app[TRANSPORTS] = set()
    app.router.add_get("/ws", websocket)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("loadtest.peers.bare", argv)
    return run_app(build_app(), args.port)


if __name__ == "__main__":
    sys.exit(main())
