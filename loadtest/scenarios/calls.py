"""``calls``: N concurrent metered calls for D seconds, with an exact billing check.

Each call is one seeded fan and one seeded creator, both on SDK
:class:`client.Client` sockets (the calls' event rates are low; this
exercises the SDK as apps use it). Before *go* the creator sets its price
(``creator.rates.set``) and the fan reads its balance. After *go*, calls
start ``--concurrency`` at a time per worker: ``call.invite``, then
``call.accept``; each lasts ``--duration`` seconds from its accept, then the
fan hangs up (``call.end``) and reads its balance again.

Checks, per call:

* ``tokens_charged == floor(duration_seconds * rate / 60)`` (``call.end`` totals);
* the fan's balance dropped by exactly ``tokens_charged`` and no hold is left;
* the creator's earnings grew by exactly ``creator_earned``;
* the creator's ``call.ended`` totals equal the fan's ``call.end`` totals.

Tick lateness: tick k of a call should arrive ``5 k`` seconds after its
accept was answered; lateness = arrival - that, both sides. Ticks due in
the last second before the call's hang-up are kept apart
(``tick_lateness_at_hangup``): with every call the same length they race
the burst of ``call.end`` requests, a different load from steady metering. PostgreSQL writes come from the server's ``/metrics`` (flushes of
metered usage, ledger batches) and, when the harness spawned the server,
from ``pg_stat_database`` (commits, rows written). A spawned server's ledger
is verified with ``digis ledger verify`` after the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from client import Client, RequestError
from loadtest.harness import Harness
from loadtest.report import Summary
from loadtest.runner import RunState, Scenario, split
from loadtest.scenarios.common import timed
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats
from loadtest.workers import WorkerContext
from protocol import events as ev
from protocol.base import ServerMessage

TICK_EVERY = 5.0


@dataclass
class _Pair:
    fan_id: int
    fan_token: str
    creator_id: int
    creator_token: str
    url: str
    fan: Client | None = None
    creator: Client | None = None
    balance_before: Any = None
    earnings_before: int = 0
    accepted_at: float = 0.0
    ticks: dict[str, int] = field(default_factory=lambda: {"fan": 0, "creator": 0})
    creator_ended: asyncio.Event = field(default_factory=asyncio.Event)
    creator_totals: Any = None


class CallsRole:
    """Pairs of fan and creator sockets, one call each; see the module docstring."""

    def __init__(self, ctx: WorkerContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.stats = ctx.stats
        self.duration = float(params["duration"])
        self.price = int(params["price"])
        self.concurrency = int(params.get("concurrency", 50))
        self.pairs = [_Pair(*row) for row in params["pairs"]]
        self.ready: list[_Pair] = []

    def _on_event(self, pair: _Pair, side: str, event: ServerMessage) -> None:
        now = time.time()
        stats = self.stats
        if isinstance(event, ev.CallTick):
            stats.add("deliveries.call.tick")
            pair.ticks[side] += 1
            if pair.accepted_at:
                due = pair.accepted_at + TICK_EVERY * pair.ticks[side]
                hang_up = pair.accepted_at + self.duration
                name = "tick_lateness" if due < hang_up - 1.0 else "tick_lateness_at_hangup"
                stats.observe(name, max(0.0, now - due) * 1000)
        elif isinstance(event, ev.CallEnded):
            stats.add("deliveries.call.ended")
            if side == "creator":
                pair.creator_totals = event.totals
                pair.creator_ended.set()
        elif isinstance(event, ev.CallStarted | ev.CallIncoming):
            stats.add(f"deliveries.{event.__class__.__name__}")
        else:
            stats.add("deliveries.other")

    async def _open(self, pair: _Pair, side: str, token: str) -> Client | None:
        def on_event(event: ServerMessage) -> None:
            self._on_event(pair, side, event)

        client = Client(pair.url, token, reconnect=False, on_event=on_event)
        try:
            await client.open()
        except Exception as exc:  # websockets raises several unrelated types here
            code = exc.code if isinstance(exc, RequestError) else f"CONNECT_{type(exc).__name__}"
            self.stats.error(code)
            with contextlib.suppress(Exception):
                await client.close()
            return None
        self.stats.add("clients.connected")
        return client

    async def setup(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)

        async def prepare(pair: _Pair) -> None:
            async with limit:
                pair.creator = await self._open(pair, "creator", pair.creator_token)
                pair.fan = await self._open(pair, "fan", pair.fan_token)
                if pair.creator is None or pair.fan is None:
                    return
                rates = await timed(
                    pair.creator,
                    self.stats,
                    "creator.rates.set",
                    video=self.price,
                    voice=self.price,
                )
                pair.balance_before = await timed(pair.fan, self.stats, "balance.get")
                creator_balance = await timed(pair.creator, self.stats, "balance.get")
                if rates is None or pair.balance_before is None or creator_balance is None:
                    return
                pair.earnings_before = creator_balance.earnings
                self.ready.append(pair)

        await asyncio.gather(*(prepare(pair) for pair in self.pairs))

    async def run(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        await asyncio.gather(*(self._call(pair, limit) for pair in self.ready))

    async def _call(self, pair: _Pair, limit: asyncio.Semaphore) -> None:
        assert pair.fan is not None and pair.creator is not None
        stats = self.stats
        async with limit:
            invite = await timed(pair.fan, stats, "call.invite", creator=pair.creator_id)
            if invite is None:
                return
            joined = await timed(pair.creator, stats, "call.accept", invite=invite.invite)
            if joined is None:
                return
            pair.accepted_at = time.time()
        stats.add("calls.started")
        stats.add("calls.active")
        stats.moment("call_started", pair.accepted_at)
        try:
            await self.ctx.sleep_until_stop(pair.accepted_at + self.duration - time.time())
            totals = await timed(pair.fan, stats, "call.end", session=joined.session)
        finally:
            stats.add("calls.active", -1)
        if totals is None:
            return
        stats.add("calls.ended")
        stats.add("call.billed_seconds", totals.duration_seconds)
        stats.add("call.wall_seconds", time.time() - pair.accepted_at)
        rate = joined.rate_per_minute
        stats.check(
            "tokens charged = floor(rate x seconds / 60)",
            rate == self.price and totals.tokens_charged == totals.duration_seconds * rate // 60,
            f"call {joined.session}: {totals.tokens_charged} charged for "
            f"{totals.duration_seconds} s at {rate}/min (price {self.price})",
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await pair.creator_ended.wait()
        stats.check(
            "creator's call.ended totals = fan's call.end totals",
            pair.creator_totals == totals,
            f"call {joined.session}: {pair.creator_totals} vs {totals}",
        )
        after = await timed(pair.fan, stats, "balance.get")
        if after is not None:
            await self._check_balance(pair, joined.session, totals.tokens_charged, after)
        creator = await timed(pair.creator, stats, "balance.get")
        if creator is not None:
            earned = creator.earnings - pair.earnings_before
            stats.check(
                "creator earnings grew by creator_earned",
                earned == totals.creator_earned,
                f"creator {pair.creator_id} call {joined.session}: earnings +{earned}, "
                f"totals say {totals.creator_earned}",
            )

    async def _check_balance(self, pair: _Pair, session: str, charged: int, after: Any) -> None:
        """The fan's wallet moved by exactly ``charged``; on a mismatch, read it again
        2 s later so the report tells a late write from a wrong one."""
        before = pair.balance_before
        ok = before.balance - after.balance == charged and after.held == before.held
        detail = ""
        if not ok and pair.fan is not None:
            await asyncio.sleep(2)
            again = await timed(pair.fan, self.stats, "balance.get")
            if again is not None:
                detail = f"; 2 s later: balance {again.balance}, held {again.held}"
        self.stats.check(
            "fan balance dropped by tokens charged",
            ok,
            f"fan {pair.fan_id} call {session}: balance {before.balance} -> {after.balance}, "
            f"held {before.held} -> {after.held}, charged {charged}{detail}",
        )

    async def close(self) -> None:
        for pair in self.pairs:
            for client in (pair.fan, pair.creator):
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.close()


def postgres_figures(env: Harness, window: float) -> dict[str, Any]:
    """Flushes, ledger batches and (if known) pg_stat_database rates over the window."""
    delta = env.probe.delta("go", "end")
    out: dict[str, Any] = {}
    names = {
        "usage flushes/s (/metrics)": "metrics:digis_flush_seconds_count",
        "usage rows flushed/s": "metrics:digis_flush_rows_sum",
        "ledger batches/s (/metrics)": "metrics:digis_ledger_batch_ops_count",
        "ledger ops/s": "metrics:digis_ledger_batch_ops_sum",
        "pg commits/s (pg_stat_database)": "pg:xact_commit",
    }
    for label, key in names.items():
        if key in delta:
            out[label] = delta[key] / window
    rows = [delta.get(f"pg:tup_{k}") for k in ("inserted", "updated", "deleted")]
    if all(r is not None for r in rows):
        out["pg rows written/s"] = sum(r or 0.0 for r in rows) / window
    return out


def call_rows(env: Harness, n: int) -> list[list[Any]]:
    """``n`` fan/creator pairs from the roster, as the calls role takes them:
    ``[fan id, fan token, creator id, creator token, ws url]``, spread over targets."""
    fans, creators = env.roster.take("fan", n), env.roster.take("creator", n)
    return [
        [f.id, f.token, c.id, c.token, env.target(i).ws_url]
        for i, (f, c) in enumerate(zip(fans, creators, strict=True))
    ]


class CallsScenario(Scenario):
    name = "calls"
    moves_money = True

    def describe(self) -> str:
        p = self.params
        return f"{p['calls']} calls of {p['duration']} s at {p['price']} tokens/min"

    def seed_request(self) -> SeedRequest:
        n = int(self.params["calls"])
        return SeedRequest(fans=n, creators=n, tokens=self.options.tokens, rate=self.options.rate)

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        rows = call_rows(env, int(self.params["calls"]))
        self.peak = 0.0
        return [
            {"roles": [calls_role(part, self.params)]} for part in split(rows, self.options.workers)
        ]

    def setup_timeout(self) -> float:
        return 120.0 + float(self.params["calls"]) / 20

    def hard_deadline(self) -> float:
        return self.duration + 90.0 + float(self.params["calls"]) / 20

    def progress(self, live: Stats) -> str:
        self.peak = max(self.peak, live.get("calls.active"))
        return f"  calls active {live.get('calls.active'):.0f} (peak {self.peak:.0f})"

    def settled(self, run: RunState) -> bool:
        self.peak = max(self.peak, run.live.get("calls.active"))
        return run.all_done

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        ended = stats.get("calls.ended")
        figures: dict[str, Any] = {
            "calls started": stats.get("calls.started"),
            "calls ended": ended,
            "peak concurrent calls": self.peak,
        }
        if ended:
            drift = stats.get("call.wall_seconds") - stats.get("call.billed_seconds")
            figures["mean wall - billed s/call"] = drift / ended
        figures.update(postgres_figures(env, summary.window_seconds))
        return figures


def calls_role(rows: list[list[Any]], params: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "loadtest.scenarios.calls:CallsRole",
        "pairs": rows,
        "duration": params["duration"],
        "price": params["price"],
        "concurrency": params.get("concurrency", 50),
    }
