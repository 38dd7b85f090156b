"""Result payloads: what ``{"type":"result","re":id,"result":...}`` carries.

``RESULTS`` maps each request class to its result class; the AsyncAPI
document and the client SDK read it, so each request's answer is typed.
"""

from __future__ import annotations

from typing import Literal

from protocol import requests as rq
from protocol.base import (
    Availability,
    CallKind,
    Payload,
    Request,
    Role,
    SessionId,
    Timestamp,
    TokenCount,
    UserId,
    UserRef,
)


class Empty(Payload):
    """A request that succeeded with nothing more to say."""


class AuthResult(Payload):
    user: UserRef
    expires_at: Timestamp


class Pong(Payload):
    server_time: Timestamp


class Profile(Payload):
    id: UserId
    email: str
    username: str
    display_name: str
    bio: str
    avatar_url: str
    role: Role
    created_at: Timestamp


class Balance(Payload):
    """A wallet's figures: ``spendable = balance - held``, never negative."""

    balance: TokenCount
    held: TokenCount
    spendable: TokenCount
    earnings: TokenCount = 0
    debt: TokenCount = 0
    frozen: TokenCount = 0


class UserPresence(Payload):
    user: UserId
    online: bool
    availability: Availability = "offline"


class PresenceList(Payload):
    users: list[UserPresence]


class Transaction(Payload):
    id: str
    kind: str
    amount: int
    direction: Literal["in", "out"]
    counterparty: str
    reference: str
    created_at: Timestamp


class TransactionPage(Payload):
    items: list[Transaction]
    next: str | None = None


class TransferResult(Payload):
    transfer: str
    amount: TokenCount
    balance: Balance
    replayed: bool = False


class EarningsDay(Payload):
    day: str
    tokens: TokenCount


class EarningsResult(Payload):
    total: TokenCount
    by_day: list[EarningsDay]
    by_source: dict[str, int]
    available: TokenCount


class TokenPackage(Payload):
    id: str
    tokens: TokenCount
    price_cents: int
    currency: str


class PackageList(Payload):
    packages: list[TokenPackage]


class PurchaseResult(Payload):
    purchase: str
    payment_intent: str
    client_secret: str
    tokens: TokenCount
    amount_cents: int
    currency: str


class PayoutResult(Payload):
    payout: str
    tokens: TokenCount
    amount_cents: int
    currency: str
    status: str


class PayoutAccount(Payload):
    account: str


class Rates(Payload):
    video: TokenCount
    voice: TokenCount


class AvailabilityResult(Payload):
    status: Availability


class InviteResult(Payload):
    invite: str
    creator: UserRef
    kind: CallKind
    rate_per_minute: TokenCount
    expires_at: Timestamp


class MediaToken(Payload):
    """An Agora token: ``rtc`` for the media channel, ``rtm`` for signalling."""

    kind: Literal["rtc", "rtm"]
    token: str
    app_id: str
    channel: str
    uid: int
    role: Literal["publisher", "subscriber"]
    expires_at: Timestamp


class CallJoined(Payload):
    """Both sides of an accepted call get this (the accept result and ``call.started``)."""

    session: SessionId
    epoch: str
    kind: CallKind
    fan: UserRef
    creator: UserRef
    rate_per_minute: TokenCount
    media: list[MediaToken]
    media_error: str = ""


class CallTotals(Payload):
    session: SessionId
    kind: CallKind
    fan: UserRef
    creator: UserRef
    started_at: Timestamp
    ended_at: Timestamp | None
    duration_seconds: int
    tokens_charged: TokenCount
    platform_fee: TokenCount
    creator_earned: TokenCount
    end_reason: str


class CallHistoryPage(Payload):
    items: list[CallTotals]
    next: str | None = None


class StreamInfo(Payload):
    session: SessionId
    creator: UserRef
    title: str
    category: str
    viewers: int
    started_at: Timestamp


class StreamStarted(Payload):
    stream: StreamInfo
    epoch: str
    media: list[MediaToken]
    media_error: str = ""


class ChatLine(Payload):
    id: int
    user: UserRef
    text: str
    ts: Timestamp


class Tipper(Payload):
    user: UserRef
    tokens: TokenCount


class StreamJoined(Payload):
    """Join (or resume) result with a snapshot of the stream.

    When ``recovered`` is true, the ``missed`` events after ``lastSeq`` follow
    this result as ordinary event frames, in order, before any newer event.
    When false the gap was too old (or the epoch changed): use the snapshot.
    """

    stream: StreamInfo
    epoch: str
    seq: int
    recovered: bool
    chat: list[ChatLine]
    top_tippers: list[Tipper]
    media: list[MediaToken]
    missed: int = 0
    media_error: str = ""


class SessionResumed(Payload):
    """Resume result; recovered events follow as frames (see :class:`StreamJoined`)."""

    session: SessionId
    kind: Literal["call", "stream"]
    epoch: str
    seq: int
    recovered: bool
    missed: int = 0


class StreamList(Payload):
    streams: list[StreamInfo]


class StreamTotals(Payload):
    session: SessionId
    duration_seconds: int
    peak_viewers: int
    unique_viewers: int
    chat_messages: int
    tips_total: TokenCount
    gifts_total: TokenCount


class ChatAccepted(Payload):
    id: int
    seq: int


class TipResult(Payload):
    transfer: str
    amount: TokenCount
    balance: Balance


class Gift(Payload):
    id: str
    name: str
    tokens: TokenCount


class GiftList(Payload):
    gifts: list[Gift]


RESULTS: dict[type[Request], type[Payload]] = {
    rq.Auth: AuthResult,
    rq.AuthRefresh: AuthResult,
    rq.Ping: Pong,
    rq.MeGet: Profile,
    rq.MeUpdate: Profile,
    rq.BalanceGet: Balance,
    rq.PresenceGet: PresenceList,
    rq.TransactionsList: TransactionPage,
    rq.TokensTransfer: TransferResult,
    rq.EarningsSummary: EarningsResult,
    rq.PackagesList: PackageList,
    rq.TokensPurchase: PurchaseResult,
    rq.PayoutRequest: PayoutResult,
    rq.PayoutAccountSet: PayoutAccount,
    rq.CreatorRatesSet: Rates,
    rq.CreatorAvailabilitySet: AvailabilityResult,
    rq.CallInvite: InviteResult,
    rq.CallCancel: Empty,
    rq.CallAccept: CallJoined,
    rq.CallDecline: Empty,
    rq.CallEnd: CallTotals,
    rq.CallsHistory: CallHistoryPage,
    rq.Typing: Empty,
    rq.StreamStart: StreamStarted,
    rq.StreamEnd: StreamTotals,
    rq.StreamJoin: StreamJoined,
    rq.StreamLeave: Empty,
    rq.StreamsLive: StreamList,
    rq.SessionResume: SessionResumed,
    rq.ChatSend: ChatAccepted,
    rq.ReactionSend: Empty,
    rq.TipSend: TipResult,
    rq.GiftSend: TipResult,
    rq.GiftsList: GiftList,
    rq.AgoraToken: MediaToken,
}
