"""Error codes and WebSocket close codes: the one table both live in.

Everything else (the error envelope, HTTP status mapping, the AsyncAPI
document, README tables and metric labels) is derived from these two tables,
so a code cannot be documented in one place and behave differently in another.

Close-code ranges carry meaning for clients:

* ``4000-4499``: the client MAY reconnect (possibly after fixing something
  that does not need a human, e.g. refreshing its token, backing off);
* ``4500-4999``: the client MUST NOT reconnect automatically;
* standard codes keep their RFC 6455 meaning.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Documentation and HTTP mapping for one error code."""

    http_status: int
    description: str


class ErrorCode(enum.StrEnum):
    """String codes carried in ``error.code`` of every error envelope."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    FORBIDDEN = "FORBIDDEN"
    CREATOR_ONLY = "CREATOR_ONLY"
    ADMIN_ONLY = "ADMIN_ONLY"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    INVALID_STATE = "INVALID_STATE"
    VALIDATION_ERROR = "VALIDATION_ERROR"
    MALFORMED_FRAME = "MALFORMED_FRAME"
    UNKNOWN_TYPE = "UNKNOWN_TYPE"
    FRAME_TOO_LARGE = "FRAME_TOO_LARGE"
    INSUFFICIENT_TOKENS = "INSUFFICIENT_TOKENS"
    CREATOR_UNAVAILABLE = "CREATOR_UNAVAILABLE"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    TOO_MANY_PENDING = "TOO_MANY_PENDING"
    MEDIA_UNAVAILABLE = "MEDIA_UNAVAILABLE"
    PAYMENT_ERROR = "PAYMENT_ERROR"
    TEMPORARILY_UNAVAILABLE = "TEMPORARILY_UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


ERRORS: dict[ErrorCode, ErrorInfo] = {
    ErrorCode.AUTH_REQUIRED: ErrorInfo(
        401,
        "The request needs a valid access token: none was given, it is expired, "
        "malformed, signed with another key, or its user no longer exists or is disabled.",
    ),
    ErrorCode.INVALID_CREDENTIALS: ErrorInfo(
        401,
        "Login failed (unknown email or wrong password), or the refresh token is "
        "unknown, expired, or was already used (its whole family is then revoked).",
    ),
    ErrorCode.FORBIDDEN: ErrorInfo(
        403, "The caller is signed in but may not act on this resource."
    ),
    ErrorCode.CREATOR_ONLY: ErrorInfo(
        403, "Only creators may do this (go live, set rates, accept calls, sell)."
    ),
    ErrorCode.ADMIN_ONLY: ErrorInfo(403, "Only admins may do this (moderation)."),
    ErrorCode.NOT_FOUND: ErrorInfo(
        404,
        "No such resource, or one the caller may not know exists (private resources "
        "answer NOT_FOUND, never FORBIDDEN).",
    ),
    ErrorCode.CONFLICT: ErrorInfo(
        409, "The resource already exists (e.g. a taken email or username)."
    ),
    ErrorCode.INVALID_STATE: ErrorInfo(
        409,
        "The request is valid but not in the resource's current state (an invitation "
        "already answered or expired, a session that has ended, a stream already live).",
    ),
    ErrorCode.VALIDATION_ERROR: ErrorInfo(
        400,
        "A field is missing, has the wrong type, or is out of range; or an idempotency "
        "key was reused with a different body. The message names the field.",
    ),
    ErrorCode.MALFORMED_FRAME: ErrorInfo(
        400, "The frame is not a JSON object (or MessagePack map) in the negotiated encoding."
    ),
    ErrorCode.UNKNOWN_TYPE: ErrorInfo(400, "The message's `type` is not one this server knows."),
    ErrorCode.FRAME_TOO_LARGE: ErrorInfo(
        413,
        "The frame exceeds the per-message limit but not the hard frame limit; the "
        "connection stays open. Above the hard limit the socket is closed with 1009.",
    ),
    ErrorCode.INSUFFICIENT_TOKENS: ErrorInfo(
        402, "The spendable balance (balance minus active holds) is too low; nothing moved."
    ),
    ErrorCode.CREATOR_UNAVAILABLE: ErrorInfo(
        409, "The creator is offline, busy or away, or already in a call."
    ),
    ErrorCode.RATE_LIMIT_EXCEEDED: ErrorInfo(
        429, "Too many requests of this kind; retry after `retryAfterMs` if given."
    ),
    ErrorCode.TOO_MANY_PENDING: ErrorInfo(
        429, "This socket already has the maximum number of requests in flight."
    ),
    ErrorCode.MEDIA_UNAVAILABLE: ErrorInfo(
        503, "Agora media tokens are not configured on this server (AGORA_APP_ID/CERTIFICATE)."
    ),
    ErrorCode.PAYMENT_ERROR: ErrorInfo(502, "The payment provider refused or failed the request."),
    ErrorCode.TEMPORARILY_UNAVAILABLE: ErrorInfo(
        503,
        "A backing service (PostgreSQL) is unreachable; the request changed nothing and "
        "may be retried.",
    ),
    ErrorCode.INTERNAL_ERROR: ErrorInfo(
        500, "An unexpected server error; details are logged under the requestId, never sent."
    ),
}


class CloseCode(enum.IntEnum):
    """Close codes the server sends (or that aiohttp sends on its behalf)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006
    PROTOCOL_ERROR = 1002
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    AUTH_DEADLINE = 4000
    TOKEN_EXPIRED = 4001
    SLOW_CONSUMER = 4002
    RATE_LIMITED = 4003
    CONNECTION_LIMIT = 4004
    AUTH_INVALID = 4500
    UNSUPPORTED_PROTOCOL = 4501
    ACCOUNT_DISABLED = 4502


CLOSES: dict[CloseCode, tuple[str, str]] = {
    CloseCode.NORMAL: ("normal", "The client or server ended the connection on purpose."),
    CloseCode.GOING_AWAY: ("going away", "The peer is going away (browser tab closed)."),
    CloseCode.ABNORMAL: (
        "abnormal closure",
        "Never sent: what a client sees when the connection dropped without a close frame, "
        "e.g. after missing the server's heartbeat pings (DIGIS_HEARTBEAT).",
    ),
    CloseCode.PROTOCOL_ERROR: ("protocol error", "The peer broke the WebSocket protocol."),
    CloseCode.INVALID_DATA: (
        "invalid data",
        "A text frame was not valid UTF-8 (sent by the WebSocket layer).",
    ),
    CloseCode.POLICY_VIOLATION: ("policy violation", "Generic policy violation."),
    CloseCode.MESSAGE_TOO_BIG: (
        "message too big",
        "A frame exceeded the hard frame limit (DIGIS_MAX_FRAME_BYTES).",
    ),
    CloseCode.INTERNAL_ERROR: ("internal error", "Unexpected server error; never with details."),
    CloseCode.SERVICE_RESTART: (
        "service restart",
        "The server is shutting down gracefully; reconnect (to another node) with backoff.",
    ),
    CloseCode.AUTH_DEADLINE: (
        "auth deadline",
        "No successful `auth` message within the auth deadline (5 s) after connecting.",
    ),
    CloseCode.TOKEN_EXPIRED: (
        "token expired",
        "The access token expired and was not refreshed with `auth.refresh` in time; "
        "refresh it over HTTP and reconnect.",
    ),
    CloseCode.SLOW_CONSUMER: (
        "slow consumer",
        "The client did not read fast enough and its send buffer exceeded its bound.",
    ),
    CloseCode.RATE_LIMITED: (
        "rate limited",
        "Sustained abuse of request rate limits; reconnect after a backoff.",
    ),
    CloseCode.CONNECTION_LIMIT: (
        "connection limit",
        "Too many simultaneous sockets for this user or address; close one and retry.",
    ),
    CloseCode.AUTH_INVALID: (
        "auth invalid",
        "The credentials presented are invalid (bad signature, unknown user); "
        "do not reconnect with the same token.",
    ),
    CloseCode.UNSUPPORTED_PROTOCOL: (
        "unsupported protocol",
        "None of the offered subprotocols is supported (use digis.v1.json or digis.v1.msgpack).",
    ),
    CloseCode.ACCOUNT_DISABLED: (
        "account disabled",
        "The account is disabled or banned.",
    ),
}


def may_reconnect(code: int) -> bool:
    """Whether a client should reconnect automatically after this close code.

    4000-4499 and the transient standard codes (1001, 1006, 1011, 1012) say yes;
    4500-4999 and protocol violations say no.
    """
    if 4000 <= code <= 4499:
        return True
    if 4500 <= code <= 4999:
        return False
    return code in (1001, 1006, 1011, 1012, 1013, 1014)


def error_status(code: ErrorCode) -> int:
    """HTTP status for an error code (used by the HTTP surface)."""
    return ERRORS[code].http_status
