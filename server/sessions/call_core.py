"""The state machine of one metered 1-on-1 call (sans-I/O).

Money rules, all in integer tokens:

* the fan pays ``floor(billed_seconds * rate / 60)`` (see ``billing.metering``);
* every token charged comes out of a confirmed hold, so the call never
  charges what was not reserved: before billing a second the core checks
  that the held tokens cover it, otherwise the call ends with
  ``insufficient_tokens`` and that second is not billed;
* holds are chained: when the current hold runs low the next one is
  requested; a hold that is used up is posted in full; at the end the
  current hold is posted for what it covered and every other is voided;
* the platform fee is computed on the cumulative charge (``fee_increment``).

Billing runs only while both participants have a socket; when one loses all
sockets billing pauses for the grace period, then the call ends ``peer_lost``.
Both sides get a tick at least every ``tick_every`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from billing.fees import fee_increment, fee_on
from billing.metering import Meter, tokens_for_seconds
from protocol import events as ev
from protocol.base import UserRef
from protocol.codes import ErrorCode
from server.errors import ApiError
from server.sessions.effects import (
    CoreBase,
    Effect,
    Finish,
    PostHold,
    RenewMedia,
    RequestHold,
    Sequencer,
    VoidHold,
)

#: Extra seconds a fan's media token outlives the prepaid window.
MEDIA_MARGIN_SECONDS = 30
LOW_BALANCE_SECONDS = 60
TYPING_INTERVAL = 2.0


@dataclass(slots=True)
class Hold:
    number: int
    key: str
    amount: int
    used: int = 0

    @property
    def remaining(self) -> int:
        return self.amount - self.used


@dataclass(slots=True)
class CallTotalsData:
    seconds: int
    charged: int
    fee: int
    earned: int


@dataclass
class CallConfig:
    hold_seconds: int = 60
    grace: float = 15.0
    tick_every: float = 5.0
    retry_hold_after: float = 5.0

    @property
    def renew_below_seconds(self) -> int:
        return max(5, self.hold_seconds // 3)


@dataclass
class CallCore(CoreBase):
    session: str
    epoch: str
    fan: UserRef
    creator: UserRef
    kind: str
    rate: int
    fee_bps: int
    first_hold: Hold
    spendable: int
    now: float
    config: CallConfig = field(default_factory=CallConfig)

    def __post_init__(self) -> None:
        self.seq = Sequencer(self.session, self.epoch)
        self.meter = Meter(self.rate)
        self.current: Hold = self.first_hold
        self.next_hold: Hold | None = None
        self.requesting: RequestHold | None = None
        self.hold_count = self.first_hold.number
        self.retry_hold_at = 0.0
        self.warned = False
        self.posted = 0
        self.state = "running"
        self.ended_reason: str | None = None
        self.ended_by: int | None = None
        self.sockets: dict[int, set[str]] = {self.fan.id: set(), self.creator.id: set()}
        self.next_bill_at = self.now + 1
        self.next_tick_at = self.now + self.config.tick_every
        self.grace_deadline: float | None = None
        self.last_typing: dict[int, float] = {}
        self.effects: list[Effect] = []
        self._maybe_request_hold(self.now)
        self._check_low_balance()

    # --- helpers --------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    @property
    def participants(self) -> tuple[int, int]:
        return (self.fan.id, self.creator.id)

    def held_tokens(self) -> int:
        """Reserved tokens not yet charged (current remainder plus the next hold)."""
        return self.current.remaining + (self.next_hold.amount if self.next_hold else 0)

    def prepaid_seconds(self) -> int:
        return self.meter.seconds_affordable(self.held_tokens())

    def totals(self) -> CallTotalsData:
        fee = fee_on(self.meter.charged, self.fee_bps)
        return CallTotalsData(self.meter.seconds, self.meter.charged, fee, self.meter.charged - fee)

    def next_deadline(self) -> float:
        if self.ended:
            return float("inf")
        deadlines = [self.next_tick_at]
        if self.state == "running":
            deadlines.append(self.next_bill_at)
        if self.grace_deadline is not None:
            deadlines.append(self.grace_deadline)
        if self.requesting is None and self.next_hold is None and self.retry_hold_at > 0:
            deadlines.append(self.retry_hold_at)
        return min(deadlines)

    def media_window(self) -> int:
        """Seconds a fan's media token may live: the prepaid window plus a margin."""
        return self.prepaid_seconds() + MEDIA_MARGIN_SECONDS

    def is_member(self, user_id: int) -> bool:
        return user_id in self.sockets

    # --- time -----------------------------------------------------------------------

    def on_time(self, now: float) -> None:
        """Run every timer that is due at ``now``."""
        if self.ended:
            return
        if self.grace_deadline is not None and now >= self.grace_deadline:
            self._finish("peer_lost", None)
            return
        billed = False
        while self.state == "running" and now >= self.next_bill_at:
            if not self._bill_one_second():
                return
            self.next_bill_at += 1
            billed = True
        if billed:
            self._check_low_balance()
        if now >= self.next_tick_at:
            self._ticks()
            while self.next_tick_at <= now:
                self.next_tick_at += self.config.tick_every
        self._maybe_request_hold(now)

    def _bill_one_second(self) -> bool:
        cost = self.meter.cost_of_next_second()
        if cost > self.held_tokens():
            self._finish("insufficient_tokens", None)
            return False
        self.meter.bill_second()
        take = min(cost, self.current.remaining)
        self.current.used += take
        rest = cost - take
        if self.current.remaining == 0 and self.next_hold is not None:
            self._switch_hold()
            self.current.used += rest
        else:
            assert rest == 0
        return True

    def _switch_hold(self) -> None:
        spent = self.current
        assert self.next_hold is not None
        if spent.used > 0:
            self._post(spent, spent.used)
        else:
            self.effects.append(VoidHold(f"{spent.key}:void", spent.key))
        self.current, self.next_hold = self.next_hold, None

    def _post(self, hold: Hold, amount: int) -> None:
        fee = fee_increment(self.posted, self.posted + amount, self.fee_bps)
        self.posted += amount
        self.effects.append(PostHold(f"{hold.key}:post", hold.key, amount, fee))

    def _ticks(self) -> None:
        totals = self.totals()
        billing: Literal["running", "paused"] = "running" if self.state == "running" else "paused"
        self._emit_ephemeral(
            ev.CallTick(
                session=self.session,
                elapsed=totals.seconds,
                charged=totals.charged,
                remaining=self.spendable + self.held_tokens(),
                billing=billing,
            ),
            (self.fan.id,),
        )
        self._emit_ephemeral(
            ev.CallTick(
                session=self.session,
                elapsed=totals.seconds,
                charged=totals.charged,
                earned=totals.earned,
                billing=billing,
            ),
            (self.creator.id,),
        )

    # --- holds ------------------------------------------------------------------------

    def _maybe_request_hold(self, now: float) -> None:
        if self.ended or self.requesting is not None or self.next_hold is not None:
            return
        if self.rate <= 0 or now < self.retry_hold_at:
            return
        if self.meter.seconds_affordable(self.current.remaining) > self.config.renew_below_seconds:
            return
        self.hold_count += 1
        amount = max(1, tokens_for_seconds(self.rate, self.config.hold_seconds))
        self.requesting = RequestHold(
            self.hold_count, f"hold:{self.session}:{self.hold_count}", amount
        )
        self.effects.append(self.requesting)

    def on_hold_result(
        self, number: int, status: str, amount: int | None, spendable: int | None, now: float
    ) -> None:
        """The ledger answered hold request ``number``."""
        request = self.requesting
        if request is None or request.number != number:
            return
        self.requesting = None
        got = amount or 0
        if self.ended:
            if status in ("ok", "exists") and got > 0:
                self.effects.append(VoidHold(f"{request.key}:void", request.key))
            return
        if status in ("ok", "exists") and got > 0:
            self.next_hold = Hold(number, request.key, got)
            self.spendable = spendable or 0
            self.effects.append(RenewMedia(self.fan.id, self.media_window()))
        else:
            self.spendable = 0
            self.retry_hold_at = now + self.config.retry_hold_after
        self._check_low_balance()

    def seconds_left(self) -> int:
        """Seconds the fan can still pay for: held tokens plus the known spendable rest."""
        return self.meter.seconds_affordable(self.held_tokens() + self.spendable)

    def _check_low_balance(self) -> None:
        if self.rate <= 0:
            return
        seconds_left = self.seconds_left()
        if seconds_left > LOW_BALANCE_SECONDS:
            self.warned = False
            return
        if self.warned:
            return
        self.warned = True
        self._emit(
            ev.CallLowBalance(
                session=self.session,
                seconds_left=seconds_left,
                remaining=self.spendable + self.held_tokens(),
            ),
            (self.fan.id,),
        )

    def note_spendable(self, spendable: int) -> None:
        """The fan's wallet changed outside the call (a tip): update what we show."""
        self.spendable = spendable
        self._check_low_balance()

    # --- presence -----------------------------------------------------------------------

    def join(self, user: int, conn: str, now: float) -> None:
        if self.ended or user not in self.sockets:
            return
        self.sockets[user].add(conn)
        if self.state == "paused" and all(self.sockets.values()):
            self.state = "running"
            self.grace_deadline = None
            self.next_bill_at = now + 1
            self._emit(ev.CallResumed(session=self.session, user=user))

    def leave(self, user: int, conn: str, now: float) -> None:
        if self.ended or user not in self.sockets:
            return
        sockets = self.sockets[user]
        sockets.discard(conn)
        if not sockets and self.state == "running":
            self.state = "paused"
            self.grace_deadline = now + self.config.grace
            self._emit(
                ev.CallPaused(session=self.session, user=user, grace_seconds=int(self.config.grace))
            )

    # --- requests -----------------------------------------------------------------------

    def end(self, user: int) -> None:
        if self.ended:
            raise ApiError(ErrorCode.INVALID_STATE, "the call has already ended")
        self._finish("hangup", user)

    def typing(self, user: int, now: float) -> None:
        if now - self.last_typing.get(user, -1e9) < TYPING_INTERVAL:
            return
        self.last_typing[user] = now
        other = self.creator.id if user == self.fan.id else self.fan.id
        self._emit_ephemeral(ev.TypingEvent(session=self.session, user=user), (other,))

    def chat(self, user: UserRef, text: str, ts: float, message_id: int) -> int:
        event = ev.SessionChat(session=self.session, id=message_id, user=user, text=text, ts=ts)
        self._emit(event)
        return event.seq

    def tipped(self, user: UserRef, amount: int, message: str, payer_spendable: int) -> None:
        self._emit(ev.SessionTip(session=self.session, user=user, amount=amount, message=message))
        if user.id == self.fan.id:
            self.note_spendable(payer_spendable)

    def gifted(
        self, user: UserRef, gift: str, name: str, tokens: int, payer_spendable: int
    ) -> None:
        self._emit(
            ev.SessionGift(session=self.session, user=user, gift=gift, name=name, tokens=tokens)
        )
        if user.id == self.fan.id:
            self.note_spendable(payer_spendable)

    def fail(self, reason: str = "server_error") -> None:
        """End now because the server must (shutdown, crash recovery)."""
        if not self.ended:
            self._finish(reason, None)

    # --- ending ---------------------------------------------------------------------------

    def _finish(self, reason: str, by: int | None) -> None:
        self.state = "ended"
        self.ended_reason = reason
        self.ended_by = by
        self.grace_deadline = None
        if self.current.used > 0:
            self._post(self.current, self.current.used)
        else:
            self.effects.append(VoidHold(f"{self.current.key}:void", self.current.key))
        if self.next_hold is not None:
            self.effects.append(VoidHold(f"{self.next_hold.key}:void", self.next_hold.key))
            self.next_hold = None
        self.effects.append(Finish(reason, by))
