"""Abuse limits: token buckets per socket, per user and per address.

``REQUEST_LIMITS`` is the documented table (README "Limits"). A request over
its bucket is answered with ``RATE_LIMIT_EXCEEDED`` (and ``retryAfterMs``).
Each refusal adds a strike and each accepted request removes one; a socket
that reaches ``ABUSE_STRIKES`` (sustained hammering, not a burst) is closed
with 4003.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from server.connection import Connection


@dataclass(frozen=True, slots=True)
class Rate:
    per_second: float
    burst: float


#: Per-socket limit for any request.
SOCKET_RATE = Rate(per_second=50, burst=100)
#: Per-user limits by request type (across all of the user's sockets).
REQUEST_LIMITS: dict[str, Rate] = {
    "auth": Rate(2, 5),
    "auth.refresh": Rate(1, 5),
    "chat.send": Rate(3, 10),
    "reaction.send": Rate(10, 30),
    "typing": Rate(2, 4),
    "tip.send": Rate(10, 20),
    "gift.send": Rate(10, 20),
    "tokens.transfer": Rate(5, 10),
    "tokens.purchase": Rate(0.5, 3),
    "payout.request": Rate(0.2, 2),
    "call.invite": Rate(1, 10),
    "stream.start": Rate(0.2, 3),
    "me.update": Rate(1, 5),
}
#: Refusals (net of accepted requests) before the socket is closed with 4003.
ABUSE_STRIKES = 50
_MAX_TRACKED = 100_000


class TokenBucket:
    __slots__ = ("burst", "rate", "tokens", "updated")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate.per_second
        self.burst = rate.burst
        self.tokens = rate.burst
        self.updated = now

    def take(self, now: float) -> float:
        """Take one token: 0.0 if allowed, else seconds until one is available."""
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Refusal:
    message: str
    retry_after_ms: int
    close: bool = False


class _Buckets:
    """A bounded map of key -> bucket (least recently used keys are dropped)."""

    def __init__(self) -> None:
        self._items: OrderedDict[object, TokenBucket] = OrderedDict()

    def take(self, key: object, rate: Rate, now: float) -> float:
        bucket = self._items.get(key)
        if bucket is None:
            bucket = self._items[key] = TokenBucket(rate, now)
            if len(self._items) > _MAX_TRACKED:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        return bucket.take(now)


class Limits:
    """Request and handshake limits; handshake figures come from configuration."""

    def __init__(
        self,
        *,
        handshake_rate: Rate = Rate(per_second=20, burst=100),
        max_sockets_per_address: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self.handshake_rate = handshake_rate
        self.max_sockets_per_address = max_sockets_per_address
        self._user_buckets = _Buckets()
        self._handshakes = _Buckets()
        self._per_address: dict[str, int] = {}

    def check_request(self, conn: Connection, kind: str) -> Refusal | None:
        now = self._clock()
        bucket = conn.bucket
        if bucket is None:
            bucket = conn.bucket = TokenBucket(SOCKET_RATE, now)
        wait = bucket.take(now)
        limit = "socket"
        if wait == 0.0 and conn.user is not None:
            rate = REQUEST_LIMITS.get(kind)
            if rate is not None:
                wait = self._user_buckets.take((conn.user.id, kind), rate, now)
                limit = kind
        if wait == 0.0:
            if conn.strikes:
                conn.strikes -= 1
            return None
        conn.strikes += 1
        strikes = conn.strikes
        conn.services.metrics.rate_limited.labels(limit).inc()
        return Refusal(
            message=f"rate limit for {limit!r} exceeded",
            retry_after_ms=max(1, int(wait * 1000)),
            close=strikes >= ABUSE_STRIKES,
        )

    def check_handshake(self, address: str) -> float:
        """0.0 if a new socket from ``address`` may open, else seconds to wait."""
        if self._per_address.get(address, 0) >= self.max_sockets_per_address:
            return 1.0
        return self._handshakes.take(address, self.handshake_rate, self._clock())

    def socket_opened(self, address: str) -> None:
        self._per_address[address] = self._per_address.get(address, 0) + 1

    def socket_closed(self, address: str) -> None:
        left = self._per_address.get(address, 0) - 1
        if left <= 0:
            self._per_address.pop(address, None)
        else:
            self._per_address[address] = left
