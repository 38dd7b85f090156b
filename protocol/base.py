"""Shared building blocks of the wire format: base Structs and constrained types.

Wire names are camelCase (``requestId``, ``ratePerMinute``); Python names are
snake_case. Every client request carries ``id`` (echoed as ``re`` in the
answer); every server message has a ``type`` tag.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PROTOCOL_VERSION = 1
SUBPROTOCOL_JSON = "digis.v1.json"
SUBPROTOCOL_MSGPACK = "digis.v1.msgpack"
SUBPROTOCOLS = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)

#: Text that reaches PostgreSQL must not contain NUL (it cannot be stored);
#: every other character, control characters included, is kept verbatim.
NO_NUL = r"^[^\x00]*$"

RequestId = Annotated[
    str, Meta(min_length=1, max_length=64, description="Client-chosen id, echoed as `re`.")
]
UserId = Annotated[int, Meta(ge=1, le=2**31 - 1, description="A user's numeric id.")]
SessionId = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="A call or stream session id (also its Agora channel name).",
    ),
]
InviteId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Tokens = Annotated[int, Meta(ge=1, le=1_000_000_000, description="A positive token amount.")]
TokenCount = Annotated[int, Meta(ge=0, description="A token count (may be zero).")]
IdempotencyKey = Annotated[
    str,
    Meta(
        min_length=8,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Client-chosen idempotency key: a retry with the same key and body is a no-op.",
    ),
]
Limit = Annotated[int, Meta(ge=1, le=100)]
Timestamp = Annotated[float, Meta(description="Seconds since the Unix epoch (UTC).")]
Role = Literal["fan", "creator", "admin"]
CallKind = Literal["video", "voice"]
Availability = Literal["online", "busy", "away", "offline"]


class Request(msgspec.Struct, tag_field="type", rename="camel", kw_only=True):
    """Base of every client-to-server message."""

    id: RequestId


class ServerMessage(
    msgspec.Struct, tag_field="type", rename="camel", kw_only=True, omit_defaults=True
):
    """Base of every server-to-client message (answers and pushed events)."""


class Payload(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """Base of nested objects and request results (no ``type`` tag)."""


class UserRef(Payload):
    """How other users are shown: never an email, never a balance."""

    id: UserId
    username: str
    display_name: str = ""
    role: Role = "fan"


def type_tag(cls: type[msgspec.Struct]) -> str:
    """The wire ``type`` tag of a tagged Struct class."""
    tag = cls.__struct_config__.tag
    assert isinstance(tag, str), f"{cls.__name__} has no tag"
    return tag
