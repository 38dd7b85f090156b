"""Server-to-client messages: answers (``result``, ``error``) and pushed events.

Events of a session (call or stream) carry ``session``, ``seq`` and ``epoch``:
``seq`` increases by one per recorded event, ``epoch`` changes when the
session's history is lost (a new actor after a crash), so a client that
resumes with ``lastSeq``/``epoch`` either gets exactly what it missed or
learns it must take a fresh snapshot. Ephemeral events (ticks, typing,
reactions, viewer counts) are not recorded and carry ``seq`` 0.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from protocol.base import (
    Availability,
    CallKind,
    Payload,
    ServerMessage,
    SessionId,
    Timestamp,
    TokenCount,
    UserId,
    UserRef,
)
from protocol.results import Balance, CallJoined, CallTotals, MediaToken, StreamTotals


class ErrorBody(Payload):
    code: str
    message: str
    request_id: str
    retry_after_ms: int | None = None


class Result(ServerMessage, tag="result"):
    """The successful answer to request ``re``; ``result`` is typed per request."""

    re: str
    result: Any


class Error(ServerMessage, tag="error"):
    """The error envelope. ``re`` is the request's id, or null if it had none."""

    re: str | None
    error: ErrorBody


# --- connection and account ----------------------------------------------------


class Hello(ServerMessage, tag="hello"):
    """First frame on every socket: what the server expects next."""

    protocol: int
    encoding: Literal["json", "msgpack"]
    auth_deadline_ms: int
    max_frame_bytes: int
    connection: str


class AuthExpiring(ServerMessage, tag="auth.expiring"):
    """The access token expires soon; send ``auth.refresh`` or be closed (4001)."""

    expires_at: Timestamp
    seconds_left: int


class BalanceUpdated(ServerMessage, tag="balance.updated"):
    """The user's wallet changed (pushed to all of the user's sockets)."""

    balance: Balance
    reason: str = ""


class PresenceChanged(ServerMessage, tag="presence.changed"):
    """A user you interact with went online/offline or changed availability."""

    user: UserId
    online: bool
    availability: Availability = "offline"


class AccountFlagged(ServerMessage, tag="account.flagged"):
    """A payment problem (refund after spend, dispute) affected the account."""

    reason: str
    debt: TokenCount = 0
    frozen: TokenCount = 0


class PaymentUpdated(ServerMessage, tag="payment.updated"):
    """A token purchase succeeded, failed or was refunded."""

    purchase: str
    status: str
    tokens: TokenCount = 0
    message: str = ""


class PayoutUpdated(ServerMessage, tag="payout.updated"):
    payout: str
    status: str
    tokens: TokenCount = 0


# --- calls: invitation (not session events) --------------------------------------


class CallIncoming(ServerMessage, tag="call.incoming"):
    """Rings every socket of the invited creator."""

    invite: str
    fan: UserRef
    kind: CallKind
    rate_per_minute: TokenCount
    expires_at: Timestamp


class CallInviteEnded(ServerMessage, tag="call.invite.ended"):
    """An invitation stopped ringing without a call: to both sides."""

    invite: str
    reason: Literal["expired", "cancelled", "declined", "answered_elsewhere", "failed"]
    message: str = ""


class CallStarted(ServerMessage, tag="call.started"):
    """The creator accepted: session id, media tokens; metering starts."""

    call: CallJoined


# --- session events (seq/epoch) ----------------------------------------------------


class SessionEvent(ServerMessage, kw_only=True):
    """Base of events that belong to one session."""

    session: SessionId
    seq: int = 0
    epoch: str = ""


class CallTick(SessionEvent, tag="call.tick"):
    """At least every 5 s during a call. Fans see ``remaining``, creators ``earned``."""

    elapsed: int
    charged: TokenCount
    remaining: TokenCount | None = None
    earned: TokenCount | None = None
    billing: Literal["running", "paused"] = "running"


class CallLowBalance(SessionEvent, tag="call.low_balance"):
    """The fan has about ``secondsLeft`` of balance left at this call's rate."""

    seconds_left: int
    remaining: TokenCount


class CallPaused(SessionEvent, tag="call.paused"):
    """A participant lost all sockets: billing is paused for the grace period."""

    user: UserId
    grace_seconds: int


class CallResumed(SessionEvent, tag="call.resumed"):
    user: UserId


class CallEnded(SessionEvent, tag="call.ended"):
    """The call is over; ``totals`` are final and persisted."""

    reason: Literal[
        "hangup", "insufficient_tokens", "peer_lost", "server_error", "server_shutdown", "admin"
    ]
    ended_by: UserId | None = None
    totals: CallTotals | None = None


class SessionPresence(SessionEvent, tag="session.presence"):
    """Someone joined or left the session."""

    user: UserRef
    action: Literal["joined", "left"]


class TypingEvent(SessionEvent, tag="typing"):
    user: UserId


class MediaTokenRenewed(SessionEvent, tag="media.token"):
    """A renewed Agora token (before expiry, or after a hold renewal)."""

    media: MediaToken


class SessionChat(SessionEvent, tag="session.chat"):
    """A chat line in a stream or a call."""

    id: int
    user: UserRef
    text: str
    ts: Timestamp


class SessionTip(SessionEvent, tag="session.tip"):
    """A tip to the session's creator (broadcast to everyone in it)."""

    user: UserRef
    amount: TokenCount
    message: str = ""


class SessionGift(SessionEvent, tag="session.gift"):
    """A catalogue gift to the session's creator."""

    user: UserRef
    gift: str
    name: str
    tokens: TokenCount


class StreamReactions(SessionEvent, tag="stream.reactions"):
    """Reactions since the last batch, counted per emoji (ephemeral)."""

    counts: dict[str, int]


class StreamViewers(SessionEvent, tag="stream.viewers"):
    """Viewer count, batched: at most one per second per stream (ephemeral)."""

    count: int


class StreamEnded(SessionEvent, tag="stream.ended"):
    reason: Literal["ended", "creator_lost", "server_error", "server_shutdown", "admin"]
    totals: StreamTotals | None = None


SERVER_EVENTS: tuple[type[ServerMessage], ...] = (
    Hello,
    AuthExpiring,
    BalanceUpdated,
    PresenceChanged,
    AccountFlagged,
    PaymentUpdated,
    PayoutUpdated,
    CallIncoming,
    CallInviteEnded,
    CallStarted,
    CallTick,
    CallLowBalance,
    CallPaused,
    CallResumed,
    CallEnded,
    SessionPresence,
    TypingEvent,
    MediaTokenRenewed,
    SessionChat,
    SessionTip,
    SessionGift,
    StreamReactions,
    StreamViewers,
    StreamEnded,
)

SERVER_MESSAGES: tuple[type[ServerMessage], ...] = (Result, Error, *SERVER_EVENTS)

#: Runtime union for decoding server frames (the client SDK).
ServerUnion: Any = Union[SERVER_MESSAGES]  # noqa: UP007
