"""Encoding and decoding of frames: JSON text or MessagePack binary.

Both codecs are built once at import. ``decode_request`` never raises: every
failure is returned as a :class:`DecodeFailure` carrying a documented error
code and, when the frame had a usable ``id``, the id to answer to.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from protocol.base import (
    NO_NUL,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Request,
    ServerMessage,
    type_tag,
)
from protocol.codes import ErrorCode
from protocol.events import ServerUnion
from protocol.requests import CLIENT_REQUESTS, ClientRequest

KNOWN_REQUEST_TYPES = frozenset(type_tag(cls) for cls in CLIENT_REQUESTS)
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024


class DecodeFailure(msgspec.Struct, frozen=True):
    """Why a frame could not become a request (a value, never an exception)."""

    code: ErrorCode
    message: str
    re: str | None = None


class _Peek(msgspec.Struct):
    """Just enough of a frame to answer an invalid one: its ``type`` and ``id``."""

    type: Any = None
    id: Any = None


def _usable_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= 64:
        return value
    return None


def readable(detail: str) -> str:
    """msgspec's validation message, with our NUL rule said in words."""
    return detail.replace(f"matching regex {NO_NUL!r}", "without NUL characters")


class Codec:
    """One wire encoding. Use :data:`JSON` or :data:`MSGPACK`."""

    __slots__ = ("_decoder", "_encode", "_peek", "_server_decoder", "binary", "name", "subprotocol")

    def __init__(self, name: Literal["json", "msgpack"]) -> None:
        self.name = name
        self.binary = name == "msgpack"
        self.subprotocol = SUBPROTOCOL_MSGPACK if self.binary else SUBPROTOCOL_JSON
        mod: Any = msgspec.msgpack if self.binary else msgspec.json
        self._decoder = mod.Decoder(ClientRequest)
        self._peek = mod.Decoder(_Peek)
        self._server_decoder = mod.Decoder(ServerUnion)
        self._encode = mod.Encoder().encode

    def encode(self, message: msgspec.Struct) -> bytes:
        """Encode any protocol Struct (server message or client request)."""
        data: bytes = self._encode(message)
        return data

    def decode_request(
        self, data: bytes | str, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    ) -> Request | DecodeFailure:
        """Decode one client frame. Never raises."""
        if isinstance(data, str):
            if self.binary:
                return DecodeFailure(
                    ErrorCode.MALFORMED_FRAME, "text frame on a digis.v1.msgpack socket"
                )
            size = len(data)  # characters <= bytes; cheap bound before encoding
            if size > max_bytes or len(data.encode("utf-8", "surrogatepass")) > max_bytes:
                return self._too_large(max_bytes)
        elif len(data) > max_bytes:
            return self._too_large(max_bytes)
        try:
            request: Request = self._decoder.decode(data)
            return request
        except msgspec.ValidationError as exc:
            return self._explain(data, str(exc))
        except (msgspec.DecodeError, RecursionError, ValueError, TypeError):
            return DecodeFailure(ErrorCode.MALFORMED_FRAME, f"frame is not valid {self.name}")

    def decode_server(self, data: bytes | str) -> ServerMessage:
        """Decode a server frame (client side). Raises ``msgspec.MsgspecError``."""
        message: ServerMessage = self._server_decoder.decode(data)
        return message

    def _too_large(self, max_bytes: int) -> DecodeFailure:
        return DecodeFailure(
            ErrorCode.FRAME_TOO_LARGE, f"message exceeds the {max_bytes}-byte message limit"
        )

    def _explain(self, data: bytes | str, detail: str) -> DecodeFailure:
        try:
            peek = self._peek.decode(data)
        except (msgspec.MsgspecError, RecursionError, ValueError, TypeError):
            return DecodeFailure(
                ErrorCode.MALFORMED_FRAME, f"frame must be a {self._object_word()}"
            )
        re = _usable_id(peek.id)
        if peek.type is None:
            return DecodeFailure(ErrorCode.VALIDATION_ERROR, "missing field `type`", re)
        if not isinstance(peek.type, str):
            return DecodeFailure(ErrorCode.VALIDATION_ERROR, "`type` must be a string", re)
        if peek.type not in KNOWN_REQUEST_TYPES:
            shown = peek.type[:64]
            return DecodeFailure(ErrorCode.UNKNOWN_TYPE, f"unknown message type {shown!r}", re)
        return DecodeFailure(ErrorCode.VALIDATION_ERROR, readable(detail), re)

    def _object_word(self) -> str:
        return "MessagePack map" if self.binary else "JSON object"


JSON = Codec("json")
MSGPACK = Codec("msgpack")


def codec_for_subprotocol(subprotocol: str | None) -> Codec | None:
    """The codec for a negotiated subprotocol; ``None`` (no offer) means JSON."""
    if subprotocol is None or subprotocol == SUBPROTOCOL_JSON:
        return JSON
    if subprotocol == SUBPROTOCOL_MSGPACK:
        return MSGPACK
    return None
