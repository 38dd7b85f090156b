"""Bodies of the small HTTP surface (auth, payments), validated like socket messages."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from protocol.base import NO_NUL, Payload, Timestamp, UserRef

Email = Annotated[
    str, Meta(min_length=3, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")
]
Username = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_]{3,32}$")]
Password = Annotated[str, Meta(min_length=8, max_length=256)]


class RegisterBody(Payload):
    email: Email
    username: Username
    password: Password
    role: Literal["fan", "creator"] = "fan"
    display_name: Annotated[str, Meta(max_length=64, pattern=NO_NUL)] = ""


class LoginBody(Payload):
    email: Email
    password: Annotated[str, Meta(min_length=1, max_length=256)]


class RefreshBody(Payload):
    refresh_token: Annotated[str, Meta(min_length=10, max_length=200)]


class TokenPair(Payload):
    """Answer of register, login and refresh."""

    user: UserRef
    access_token: str
    expires_at: Timestamp
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret


class PaymentIntentBody(Payload):
    package: Annotated[str, Meta(min_length=1, max_length=32, pattern=NO_NUL)]


class Health(Payload):
    status: Literal["ok", "unavailable"]
    node: str
    uptime_seconds: float
    postgres: bool | None = None
    redis: bool | None = None
    shutting_down: bool = False
