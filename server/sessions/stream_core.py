"""The state machine of one live stream (sans-I/O).

Everyone in the stream receives chat, tips and gifts as recorded events (with
``seq``/``epoch`` for recovery). Viewer counts and reactions are coalesced
and sent at most once per ``batch_every`` seconds as ephemeral events, never
one event per join or per reaction. Joins and leaves are reported to the
creator only (a thousand viewers do not need a thousand presence events each).
If the creator loses every socket the stream waits ``grace`` seconds, then
ends ``creator_lost``.
"""

from __future__ import annotations

import heapq
from collections import Counter, deque
from dataclasses import dataclass, field

from protocol import events as ev
from protocol import results as rs
from protocol.base import UserRef
from protocol.codes import ErrorCode
from server.errors import ApiError
from server.limits import Rate, TokenBucket
from server.sessions.effects import CoreBase, Effect, Finish, Sequencer

RECENT_CHAT = 50
TOP_TIPPERS = 5
#: Stream-wide chat flood control (on top of each user's own limit).
STREAM_CHAT_RATE = Rate(per_second=200, burst=400)
#: Per-user chat limit inside one stream.
USER_CHAT_RATE = Rate(per_second=2, burst=5)


@dataclass
class StreamConfig:
    batch_every: float = 1.0
    grace: float = 30.0


@dataclass(slots=True)
class ViewerMark:
    """A join or leave to persist as a ``stream_viewers`` row."""

    user: int
    at: float
    joined: bool


@dataclass
class StreamCore(CoreBase):
    session: str
    epoch: str
    creator: UserRef
    title: str
    category: str
    started_wall: float
    now: float
    config: StreamConfig = field(default_factory=StreamConfig)

    def __post_init__(self) -> None:
        self.seq = Sequencer(self.session, self.epoch)
        self.started_mono = self.now
        self.viewers: dict[int, set[str]] = {}
        self.refs: dict[int, UserRef] = {}
        self.unique: set[int] = set()
        self.peak = 0
        self.chat: deque[rs.ChatLine] = deque(maxlen=RECENT_CHAT)
        self.chat_count = 0
        self.tippers: dict[int, int] = {}
        self.tips_total = 0
        self.gifts_total = 0
        self.reactions: Counter[str] = Counter()
        self.viewers_dirty = False
        self.next_batch_at = self.now + self.config.batch_every
        self.creator_sockets: set[str] = set()
        self.grace_deadline: float | None = None
        self.state = "live"
        self.ended_reason: str | None = None
        self.effects: list[Effect] = []
        self.marks: list[ViewerMark] = []
        self.unsaved_chat: list[tuple[int, int, str, float]] = []
        self._stream_chat = TokenBucket(STREAM_CHAT_RATE, self.now)
        self._user_chat: dict[int, TokenBucket] = {}

    # --- helpers ----------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def viewer_count(self) -> int:
        return len(self.viewers)

    def wall(self, now: float) -> float:
        return self.started_wall + (now - self.started_mono)

    def next_deadline(self) -> float:
        if self.ended:
            return float("inf")
        deadline = self.next_batch_at
        if self.grace_deadline is not None:
            deadline = min(deadline, self.grace_deadline)
        return deadline

    def info(self) -> rs.StreamInfo:
        return rs.StreamInfo(
            session=self.session,
            creator=self.creator,
            title=self.title,
            category=self.category,
            viewers=self.viewer_count,
            started_at=self.started_wall,
        )

    def top_tippers(self) -> list[rs.Tipper]:
        best = heapq.nlargest(TOP_TIPPERS, self.tippers.items(), key=lambda item: item[1])
        return [rs.Tipper(user=self.refs[user], tokens=tokens) for user, tokens in best]

    def is_member(self, user_id: int) -> bool:
        return user_id == self.creator.id or user_id in self.viewers

    # --- time -------------------------------------------------------------------------

    def on_time(self, now: float) -> None:
        if self.ended:
            return
        if self.grace_deadline is not None and now >= self.grace_deadline:
            self._finish("creator_lost")
            return
        if now >= self.next_batch_at:
            if self.viewers_dirty:
                self.viewers_dirty = False
                self._emit_ephemeral(
                    ev.StreamViewers(session=self.session, count=self.viewer_count)
                )
            if self.reactions:
                counts, self.reactions = dict(self.reactions), Counter()
                self._emit_ephemeral(ev.StreamReactions(session=self.session, counts=counts))
            self.next_batch_at = now + self.config.batch_every

    # --- presence ---------------------------------------------------------------------

    def join(self, user: UserRef, conn: str, now: float) -> None:
        if self.ended:
            raise ApiError(ErrorCode.INVALID_STATE, "the stream has ended")
        if user.id == self.creator.id:
            self.creator_sockets.add(conn)
            self.grace_deadline = None
            return
        sockets = self.viewers.setdefault(user.id, set())
        first = not sockets
        sockets.add(conn)
        self.refs[user.id] = user
        if first:
            self.unique.add(user.id)
            self.peak = max(self.peak, self.viewer_count)
            self.viewers_dirty = True
            self.marks.append(ViewerMark(user.id, self.wall(now), True))
            self._emit_ephemeral(
                ev.SessionPresence(session=self.session, user=user, action="joined"),
                (self.creator.id,),
            )

    def leave(self, user_id: int, conn: str, now: float) -> bool:
        """Drop one socket; True if the user is no longer in the stream."""
        if user_id == self.creator.id:
            self.creator_sockets.discard(conn)
            if not self.creator_sockets and not self.ended:
                self.grace_deadline = now + self.config.grace
            return not self.creator_sockets
        sockets = self.viewers.get(user_id)
        if sockets is None:
            return True
        sockets.discard(conn)
        if sockets:
            return False
        del self.viewers[user_id]
        self.viewers_dirty = True
        self.marks.append(ViewerMark(user_id, self.wall(now), False))
        if not self.ended:
            self._emit_ephemeral(
                ev.SessionPresence(session=self.session, user=self.refs[user_id], action="left"),
                (self.creator.id,),
            )
        return True

    # --- requests ---------------------------------------------------------------------

    def chat_message(self, user: UserRef, text: str, now: float) -> tuple[int, int]:
        """Post a chat line; returns (message id, seq). Flood control may refuse it."""
        if self.ended:
            raise ApiError(ErrorCode.INVALID_STATE, "the stream has ended")
        if not self.is_member(user.id):
            raise ApiError(ErrorCode.FORBIDDEN, "join the stream before chatting")
        bucket = self._user_chat.get(user.id)
        if bucket is None:
            bucket = self._user_chat[user.id] = TokenBucket(USER_CHAT_RATE, now)
        wait = bucket.take(now) or self._stream_chat.take(now)
        if wait:
            raise ApiError(
                ErrorCode.RATE_LIMIT_EXCEEDED,
                "chat is going too fast; slow down",
                retry_after_ms=max(1, int(wait * 1000)),
            )
        self.chat_count += 1
        message_id = self.chat_count
        ts = self.wall(now)
        line = rs.ChatLine(id=message_id, user=user, text=text, ts=ts)
        self.chat.append(line)
        self.unsaved_chat.append((message_id, user.id, text, ts))
        event = ev.SessionChat(session=self.session, id=message_id, user=user, text=text, ts=ts)
        self._emit(event)
        return message_id, event.seq

    def reaction(self, user_id: int, emoji: str) -> None:
        if self.ended:
            raise ApiError(ErrorCode.INVALID_STATE, "the stream has ended")
        if not self.is_member(user_id):
            raise ApiError(ErrorCode.FORBIDDEN, "join the stream before reacting")
        if emoji in self.reactions or len(self.reactions) < 32:
            self.reactions[emoji] += 1

    def tipped(self, user: UserRef, amount: int, message: str) -> None:
        self.refs.setdefault(user.id, user)
        self.tips_total += amount
        self.tippers[user.id] = self.tippers.get(user.id, 0) + amount
        self._emit(ev.SessionTip(session=self.session, user=user, amount=amount, message=message))

    def gifted(self, user: UserRef, gift: str, name: str, tokens: int) -> None:
        self.refs.setdefault(user.id, user)
        self.gifts_total += tokens
        self.tippers[user.id] = self.tippers.get(user.id, 0) + tokens
        self._emit(
            ev.SessionGift(session=self.session, user=user, gift=gift, name=name, tokens=tokens)
        )

    def end(self, user_id: int) -> None:
        if self.ended:
            raise ApiError(ErrorCode.INVALID_STATE, "the stream has already ended")
        if user_id != self.creator.id:
            raise ApiError(ErrorCode.FORBIDDEN, "only the streaming creator can end it")
        self._finish("ended")

    def fail(self, reason: str = "server_error") -> None:
        if not self.ended:
            self._finish(reason)

    def totals(self, now: float) -> rs.StreamTotals:
        return rs.StreamTotals(
            session=self.session,
            duration_seconds=int(now - self.started_mono),
            peak_viewers=self.peak,
            unique_viewers=len(self.unique),
            chat_messages=self.chat_count,
            tips_total=self.tips_total,
            gifts_total=self.gifts_total,
        )

    def _finish(self, reason: str) -> None:
        self.state = "ended"
        self.ended_reason = reason
        self.grace_deadline = None
        self.effects.append(Finish(reason))
