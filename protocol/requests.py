"""Client-to-server requests: one tagged union keyed by ``type``.

Add a request by adding a Struct here *and* to ``CLIENT_REQUESTS`` below; the
decoder, the AsyncAPI document and the server's dispatch table all read that
tuple. New fields on existing requests must have defaults (schema evolution).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from msgspec import Meta

from protocol.base import (
    NO_NUL,
    Availability,
    CallKind,
    IdempotencyKey,
    InviteId,
    Limit,
    Request,
    SessionId,
    Tokens,
    UserId,
)

JwtToken = Annotated[str, Meta(min_length=10, max_length=4096)]
ChatText = Annotated[str, Meta(min_length=1, max_length=500, pattern=NO_NUL)]
ShortText = Annotated[str, Meta(max_length=200, pattern=NO_NUL)]
Rate = Annotated[int, Meta(ge=0, le=100_000, description="Tokens per minute.")]
Cursor = Annotated[str, Meta(max_length=100)]


# --- connection and account -------------------------------------------------


class Auth(Request, tag="auth"):
    """Authenticate the socket with an access token (must be the first request)."""

    token: JwtToken


class AuthRefresh(Request, tag="auth.refresh"):
    """Replace the socket's access token with a fresh one without reconnecting."""

    token: JwtToken


class Ping(Request, tag="ping"):
    """Application-level ping; answered with the server time."""


class MeGet(Request, tag="me.get"):
    """The caller's own profile."""


class MeUpdate(Request, tag="me.update"):
    """Update profile fields; omitted fields are left unchanged."""

    display_name: Annotated[str, Meta(max_length=64, pattern=NO_NUL)] | None = None
    bio: Annotated[str, Meta(max_length=1000, pattern=NO_NUL)] | None = None
    avatar_url: Annotated[str, Meta(max_length=500, pattern=r"^(https://\S+)?$")] | None = None


class BalanceGet(Request, tag="balance.get"):
    """The caller's wallet: balance, held (active holds) and spendable."""


class PresenceGet(Request, tag="presence.get"):
    """Online/offline state of up to 100 users."""

    users: Annotated[list[UserId], Meta(max_length=100)]


# --- token economy -----------------------------------------------------------


class TransactionsList(Request, tag="transactions.list"):
    """The caller's ledger entries, newest first; pass ``before`` to page."""

    limit: Limit = 50
    before: Cursor | None = None
    kind: Annotated[str, Meta(max_length=32, pattern=NO_NUL)] | None = None


class TokensTransfer(Request, tag="tokens.transfer"):
    """Send tokens to another user; idempotent by ``key``."""

    to: UserId
    amount: Tokens
    key: IdempotencyKey
    note: ShortText = ""


class EarningsSummary(Request, tag="earnings.summary"):
    """Creators: earnings by day and by source over the last ``days`` days."""

    days: Annotated[int, Meta(ge=1, le=366)] = 30


class PackagesList(Request, tag="packages.list"):
    """Token packages on sale."""


class TokensPurchase(Request, tag="tokens.purchase"):
    """Start buying a token package: returns a Stripe PaymentIntent client secret."""

    package: Annotated[str, Meta(min_length=1, max_length=32, pattern=NO_NUL)]


class PayoutRequest(Request, tag="payout.request"):
    """Creators: convert earned tokens to a payout (at least the minimum)."""

    tokens: Tokens


class PayoutAccountSet(Request, tag="payout.account.set"):
    """Creators: the Stripe connected account (``acct_...``) payouts are sent to."""

    account: Annotated[str, Meta(pattern=r"^acct_[A-Za-z0-9]{6,64}$")]


# --- creators and calls ------------------------------------------------------


class CreatorRatesSet(Request, tag="creator.rates.set"):
    """Creators: per-minute token rates for video and voice calls."""

    video: Rate
    voice: Rate


class CreatorAvailabilitySet(Request, tag="creator.availability.set"):
    """Creators: whether they take calls now."""

    status: Availability


class CallInvite(Request, tag="call.invite"):
    """Fans: ring a creator; the invitation expires unanswered after 30 s."""

    creator: UserId
    kind: CallKind = "video"


class CallCancel(Request, tag="call.cancel"):
    """The inviting fan withdraws an invitation that is still ringing."""

    invite: InviteId


class CallAccept(Request, tag="call.accept"):
    """The invited creator answers; starts the metered call."""

    invite: InviteId


class CallDecline(Request, tag="call.decline"):
    """The invited creator declines."""

    invite: InviteId


class CallEnd(Request, tag="call.end"):
    """Either participant hangs up."""

    session: SessionId


class CallsHistory(Request, tag="calls.history"):
    """The caller's past calls with their totals, newest first."""

    limit: Limit = 20
    before: Cursor | None = None


class Typing(Request, tag="typing"):
    """Ephemeral "is typing" signal inside a call (throttled)."""

    session: SessionId


# --- streams -------------------------------------------------------------------


class StreamStart(Request, tag="stream.start"):
    """Creators: go live."""

    title: Annotated[str, Meta(min_length=1, max_length=140, pattern=NO_NUL)]
    category: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] = "general"


class StreamEnd(Request, tag="stream.end"):
    """The streaming creator ends the stream."""

    session: SessionId


class StreamJoin(Request, tag="stream.join"):
    """Watch a live stream. With ``lastSeq`` and ``epoch`` it is a resume."""

    session: SessionId
    last_seq: Annotated[int, Meta(ge=0)] | None = None
    epoch: Annotated[str, Meta(max_length=64)] | None = None


class StreamLeave(Request, tag="stream.leave"):
    """Stop watching."""

    session: SessionId


class StreamsLive(Request, tag="streams.live"):
    """Streams that are live now, with viewer counts."""

    limit: Limit = 50
    category: Annotated[str, Meta(max_length=40, pattern=NO_NUL)] | None = None


class SessionResume(Request, tag="session.resume"):
    """After a reconnect: rejoin a call or stream and receive missed events."""

    session: SessionId
    last_seq: Annotated[int, Meta(ge=0)] = 0
    epoch: Annotated[str, Meta(max_length=64)] = ""


class ChatSend(Request, tag="chat.send"):
    """A chat message in a stream (or call)."""

    session: SessionId
    text: ChatText


class ReactionSend(Request, tag="reaction.send"):
    """An ephemeral reaction; coalesced and broadcast as counts."""

    session: SessionId
    emoji: Annotated[str, Meta(min_length=1, max_length=16, pattern=NO_NUL)]


class TipSend(Request, tag="tip.send"):
    """Tip the creator of a stream or call (on top of any metered charge)."""

    session: SessionId
    amount: Tokens
    message: ShortText = ""
    key: IdempotencyKey | None = None


class GiftSend(Request, tag="gift.send"):
    """Send a catalogue gift to the creator of a stream or call."""

    session: SessionId
    gift: Annotated[str, Meta(min_length=1, max_length=32, pattern=NO_NUL)]
    key: IdempotencyKey | None = None


class GiftsList(Request, tag="gifts.list"):
    """The gift catalogue with token prices."""


class AgoraToken(Request, tag="agora.token"):
    """A media token for a session the caller is a member of."""

    session: SessionId
    kind: Literal["rtc", "rtm"] = "rtc"


CLIENT_REQUESTS: tuple[type[Request], ...] = (
    Auth,
    AuthRefresh,
    Ping,
    MeGet,
    MeUpdate,
    BalanceGet,
    PresenceGet,
    TransactionsList,
    TokensTransfer,
    EarningsSummary,
    PackagesList,
    TokensPurchase,
    PayoutRequest,
    PayoutAccountSet,
    CreatorRatesSet,
    CreatorAvailabilitySet,
    CallInvite,
    CallCancel,
    CallAccept,
    CallDecline,
    CallEnd,
    CallsHistory,
    Typing,
    StreamStart,
    StreamEnd,
    StreamJoin,
    StreamLeave,
    StreamsLive,
    SessionResume,
    ChatSend,
    ReactionSend,
    TipSend,
    GiftSend,
    GiftsList,
    AgoraToken,
)

#: The union the decoder is built from (a runtime Union over the tuple above;
#: static code types decoded values as :class:`Request` and dispatches on class).
ClientRequest: Any = Union[CLIENT_REQUESTS]  # noqa: UP007
