"""Outgoing messages encoded once and framed once per wire encoding.

A :class:`Outgoing` wraps one server message; ``frame(codec)`` encodes and
frames it the first time a subscriber with that codec needs it and returns
the same bytes to every later subscriber. A stream event to ten thousand
viewers is therefore encoded at most twice (JSON and MessagePack).
"""

from __future__ import annotations

import msgspec

from protocol.base import ServerMessage, type_tag
from protocol.codec import Codec
from server.frames import ws_frame


class Outgoing:
    __slots__ = ("_json", "_msgpack", "message", "type")

    def __init__(self, message: ServerMessage) -> None:
        self.message = message
        self.type = type_tag(type(message))
        self._json: bytes | None = None
        self._msgpack: bytes | None = None

    def frame(self, codec: Codec) -> bytes:
        """The complete WebSocket frame for ``codec``'s subscribers."""
        if codec.binary:
            if self._msgpack is None:
                self._msgpack = ws_frame(codec.encode(self.message), binary=True)
            return self._msgpack
        if self._json is None:
            self._json = ws_frame(codec.encode(self.message), binary=False)
        return self._json


def encode_result_frame(codec: Codec, message: msgspec.Struct) -> bytes:
    """Encode and frame a one-off message (a reply to one socket)."""
    return ws_frame(codec.encode(message), binary=codec.binary)
