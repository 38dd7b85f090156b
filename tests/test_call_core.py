"""The call state machine on a fake clock: exact charges, exhaustion, grace, holds.

A small wallet model stands in for the ledger: it answers hold requests
(balancing: at most what is spendable), applies posts and voids, and checks
that the call never spends a token that was not held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.fees import fee_on
from billing.metering import seconds_for_tokens, tokens_for_seconds
from protocol import events as ev
from protocol.base import UserRef
from server.sessions.call_core import CallConfig, CallCore, Hold
from server.sessions.effects import Emit, Finish, PostHold, RenewMedia, RequestHold, VoidHold

FAN = UserRef(id=1, username="fan")
CREATOR = UserRef(id=2, username="creator", role="creator")
FEE_BPS = 2000


@dataclass
class Wallet:
    """The fan's wallet as the ledger would keep it."""

    balance: int
    held: dict[str, int] = field(default_factory=dict)
    posted: int = 0
    fees: int = 0

    @property
    def spendable(self) -> int:
        return self.balance - sum(self.held.values())

    def hold(self, key: str, amount: int) -> int:
        got = min(amount, self.spendable)
        if got > 0:
            self.held[key] = got
        return got

    def post(self, effect: PostHold) -> None:
        held = self.held.pop(effect.hold_key)
        assert 0 < effect.amount <= held
        self.balance -= effect.amount
        self.posted += effect.amount
        self.fees += effect.fee

    def void(self, effect: VoidHold) -> None:
        self.held.pop(effect.hold_key)

    def spend(self, amount: int) -> bool:
        if amount > self.spendable:
            return False
        self.balance -= amount
        return True


@dataclass
class Sim:
    core: CallCore
    wallet: Wallet
    now: float
    events: list[Emit] = field(default_factory=list)
    finish: Finish | None = None
    pending: list[RequestHold] = field(default_factory=list)
    renewals: list[RenewMedia] = field(default_factory=list)
    answer_holds: bool = True

    def drain(self) -> None:
        for effect in self.core.take_effects():
            if isinstance(effect, Emit):
                self.events.append(effect)
            elif isinstance(effect, RequestHold):
                self.pending.append(effect)
            elif isinstance(effect, PostHold):
                self.wallet.post(effect)
            elif isinstance(effect, VoidHold):
                self.wallet.void(effect)
            elif isinstance(effect, RenewMedia):
                self.renewals.append(effect)
            elif isinstance(effect, Finish):
                assert self.finish is None, "finished twice"
                self.finish = effect
        if self.answer_holds:
            self.answer_all()

    def answer_all(self) -> None:
        while self.pending:
            self.answer(self.pending.pop(0))

    def answer(self, request: RequestHold) -> None:
        got = self.wallet.hold(request.key, request.amount)
        status = "ok" if got > 0 else "insufficient"
        self.core.on_hold_result(request.number, status, got, self.wallet.spendable, self.now)
        self.drain()

    def advance(self, seconds: float, step: float = 0.25) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9 and not self.core.ended:
            self.now = min(end, self.now + step)
            self.core.on_time(self.now)
            self.drain()

    def of(self, kind: type) -> list:
        return [e.event for e in self.events if isinstance(e.event, kind)]


def start_call(
    balance: int, rate: int, *, config: CallConfig | None = None, now: float = 1000.0
) -> Sim:
    wallet = Wallet(balance)
    config = config or CallConfig(hold_seconds=60, grace=15, tick_every=5)
    first_amount = max(1, tokens_for_seconds(rate, config.hold_seconds))
    got = wallet.hold("hold:s1:1", first_amount)
    assert got > 0
    core = CallCore(
        session="s1",
        epoch="e1",
        fan=FAN,
        creator=CREATOR,
        kind="video",
        rate=rate,
        fee_bps=FEE_BPS,
        first_hold=Hold(1, "hold:s1:1", got),
        spendable=wallet.spendable,
        now=now,
        config=config,
    )
    core.join(FAN.id, "c-fan", now)
    core.join(CREATOR.id, "c-creator", now)
    sim = Sim(core, wallet, now)
    sim.drain()
    return sim


@given(st.integers(1, 10_000), st.integers(0, 100_000))
def test_seconds_for_tokens_is_the_least_inverse_of_the_meter(rate: int, seconds: int) -> None:
    tokens = tokens_for_seconds(rate, seconds)
    least = seconds_for_tokens(rate, tokens)
    assert least <= seconds
    assert tokens_for_seconds(rate, least) == tokens
    assert least == 0 or tokens_for_seconds(rate, least - 1) < tokens


@pytest.mark.parametrize("rate", [1, 7, 30, 59, 60, 61, 100, 599, 1000])
def test_ten_minute_call_charges_exactly_ten_times_the_rate(rate: int) -> None:
    sim = start_call(balance=1_000_000, rate=rate)
    sim.advance(600.0)
    sim.core.end(FAN.id)
    sim.drain()
    totals = sim.core.totals()
    assert (totals.seconds, totals.charged) == (600, 10 * rate)
    assert sim.wallet.posted == 10 * rate
    assert sim.wallet.fees == fee_on(10 * rate, FEE_BPS) == totals.fee
    assert sim.wallet.held == {}  # every hold posted or released
    assert sim.finish == Finish("hangup", FAN.id)
    assert sim.wallet.balance == 1_000_000 - 10 * rate


@pytest.mark.parametrize(("balance", "rate"), [(100, 60), (100, 7), (5, 600), (61, 60), (1, 1)])
def test_balance_exhaustion_ends_the_call_at_the_right_second(balance: int, rate: int) -> None:
    sim = start_call(balance=balance, rate=rate)
    sim.advance(100_000.0, step=1.0)
    assert sim.finish is not None and sim.finish.reason == "insufficient_tokens"
    expected_seconds = max(s for s in range(0, 100_000) if tokens_for_seconds(rate, s) <= balance)
    totals = sim.core.totals()
    assert totals.seconds == expected_seconds
    assert totals.charged == tokens_for_seconds(rate, expected_seconds) <= balance
    assert sim.wallet.balance == balance - totals.charged >= 0
    assert sim.wallet.held == {}
    warnings = sim.of(ev.CallLowBalance)
    assert len(warnings) == 1
    assert warnings[0].seconds_left <= 60


def test_ticks_reach_both_sides_at_least_every_five_seconds() -> None:
    sim = start_call(balance=10_000, rate=60)
    sim.advance(31.0)
    fan_ticks = [e for e in sim.events if isinstance(e.event, ev.CallTick) and e.to == (FAN.id,)]
    creator_ticks = [
        e for e in sim.events if isinstance(e.event, ev.CallTick) and e.to == (CREATOR.id,)
    ]
    assert len(fan_ticks) == len(creator_ticks) == 6
    last = fan_ticks[-1].event
    assert (last.elapsed, last.charged) == (30, 30)
    assert last.remaining == 10_000 - 30 and last.earned is None
    assert creator_ticks[-1].event.earned == 30 - fee_on(30, FEE_BPS)
    assert creator_ticks[-1].event.remaining is None


def test_rejoin_within_grace_resumes_without_charging_the_pause() -> None:
    sim = start_call(balance=10_000, rate=60)
    sim.advance(10.5)
    sim.core.leave(FAN.id, "c-fan", sim.now)
    sim.drain()
    assert sim.of(ev.CallPaused) and sim.core.state == "paused"
    sim.advance(10.0)
    assert sim.core.totals().seconds == 10
    sim.core.join(FAN.id, "c-fan-2", sim.now)
    sim.drain()
    assert sim.of(ev.CallResumed) and sim.core.state == "running"
    sim.advance(5.0)
    sim.core.end(CREATOR.id)
    sim.drain()
    assert sim.core.totals().seconds == 15
    assert sim.wallet.posted == 15
    assert [e.seq for e in (sim.of(ev.CallPaused) + sim.of(ev.CallResumed))] == [1, 2]


def test_no_rejoin_within_grace_ends_peer_lost() -> None:
    sim = start_call(balance=10_000, rate=60)
    sim.advance(8.0)
    sim.core.leave(CREATOR.id, "c-creator", sim.now)
    sim.drain()
    sim.advance(14.9)
    assert sim.finish is None
    sim.advance(0.2)
    assert sim.finish == Finish("peer_lost", None)
    assert sim.core.totals().seconds == 8
    assert sim.wallet.posted == 8 and sim.wallet.held == {}


def test_second_socket_keeps_the_call_running() -> None:
    sim = start_call(balance=1000, rate=60)
    sim.core.join(FAN.id, "c-fan-phone", sim.now)
    sim.core.leave(FAN.id, "c-fan", sim.now)
    sim.drain()
    assert sim.core.state == "running" and not sim.of(ev.CallPaused)


def test_holds_are_renewed_and_each_renewal_renews_the_fans_media() -> None:
    sim = start_call(balance=10_000, rate=60)
    sim.advance(200.0)
    assert len(sim.renewals) >= 3
    assert all(r.user == FAN.id for r in sim.renewals)
    # the prepaid window never promises more than the held tokens plus the margin
    for renewal in sim.renewals:
        assert renewal.expires_in <= 2 * 60 + 30


def test_ending_twice_is_an_error_and_changes_nothing() -> None:
    from server.errors import ApiError

    sim = start_call(balance=100, rate=60)
    sim.advance(3.0)
    sim.core.end(FAN.id)
    sim.drain()
    with pytest.raises(ApiError):
        sim.core.end(CREATOR.id)
    assert sim.finish == Finish("hangup", FAN.id)


def test_typing_is_throttled_and_goes_to_the_other_side() -> None:
    sim = start_call(balance=100, rate=60)
    for _ in range(5):
        sim.core.typing(FAN.id, sim.now)
    sim.drain()
    typing = [e for e in sim.events if isinstance(e.event, ev.TypingEvent)]
    assert len(typing) == 1 and typing[0].to == (CREATOR.id,) and not typing[0].record


@settings(max_examples=200, deadline=None)
@given(
    balance=st.integers(min_value=1, max_value=400),
    rate=st.integers(min_value=1, max_value=300),
    script=st.lists(
        st.tuples(
            st.sampled_from(["tick", "tip", "answer", "leave", "join"]),
            st.integers(min_value=1, max_value=50),
        ),
        max_size=80,
    ),
)
def test_tips_racing_holds_never_overdraw(balance: int, rate: int, script: list) -> None:
    """Any interleaving of ticks, tips and late hold answers keeps the wallet whole."""
    sim = start_call(balance=balance, rate=rate, config=CallConfig(hold_seconds=20, grace=30))
    sim.answer_holds = False
    tipped = 0
    for action, n in script:
        if sim.core.ended:
            break
        if action == "tick":
            sim.advance(float(n % 7 + 1), step=1.0)
        elif action == "tip" and sim.wallet.spend(n):
            tipped += n
            sim.core.tipped(FAN, n, "", sim.wallet.spendable)
            sim.drain()
        elif action == "answer" and sim.pending:
            sim.answer(sim.pending.pop(0))
        elif action == "leave":
            sim.core.leave(FAN.id, "c-fan", sim.now)
            sim.drain()
        elif action == "join":
            sim.core.join(FAN.id, "c-fan", sim.now)
            sim.drain()
        assert sim.wallet.spendable >= 0
        assert sim.core.meter.charged - sim.core.posted <= sum(sim.wallet.held.values())
    if not sim.core.ended:
        sim.core.end(FAN.id)
        sim.drain()
    sim.answer_all()
    assert sim.wallet.held == {}
    charged = sim.core.totals().charged
    assert sim.wallet.posted == charged
    assert sim.wallet.balance == balance - charged - tipped >= 0
