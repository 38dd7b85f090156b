"""python-socketio on aiohttp: one room, one ``emit`` per chat line.

Clients connect to the default namespace and are put in room ``stream``;
a ``chat`` event ``{"text": ...}`` from any client is re-emitted to the room
as ``{"text": ..., "ts": ...}``. This is the idiomatic Socket.IO fan-out
(python-socketio encodes the packet once per emit, then sends it to each
participant through engine.io's per-client queue). Only the websocket
transport is enabled, so no client spends time in long-polling.

Needs ``python-socketio`` (the optional ``bench`` extra).
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from loadtest.peers.runner import parse_args, run_app

ROOM = "stream"


def build_app() -> web.Application:
    socketio: Any = importlib.import_module("socketio")
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        transports=["websocket"],
        cors_allowed_origins="*",
        max_http_buffer_size=1_000_000,
    )
    app = web.Application()
    sio.attach(app)

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        await sio.enter_room(sid, ROOM)

    async def chat(sid: str, data: Any) -> None:
        text = data.get("text", "") if isinstance(data, dict) else ""
        await sio.emit("chat", {"text": text, "ts": time.time()}, room=ROOM)

    sio.on("connect", connect)
    sio.on("chat", chat)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args("loadtest.peers.sio", argv)
    return run_app(build_app(), args.port)


if __name__ == "__main__":
    sys.exit(main())
