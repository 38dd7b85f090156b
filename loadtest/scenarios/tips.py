"""``tips``: many fans tipping one live creator; how many tips/s commit.

One creator goes live (SDK socket in the parent); ``--fans`` lean clients
join the stream (the server only accepts tips from members) and together
send ``--rate`` ``tip.send`` requests per second of ``--amount`` tokens for
``--duration`` seconds, round-robin. A tip is committed when its answer
arrives: each one is a ledger transfer (batched by the server's ledger
writer) followed by a balance read.

Every accepted tip is also broadcast to everyone in the stream as
``session.tip``, so this scenario carries fans x tips/s deliveries too; keep
that in mind when reading the server's CPU. A fan whose tokens run out gets
``INSUFFICIENT_TOKENS`` (seed fewer with ``--tokens`` to provoke it).

Checks: tip deliveries = accepted tips x fans; the server's ``stream.end``
``tipsTotal`` equals the accepted amount.
"""

from __future__ import annotations

from typing import Any

from loadtest.fanout_plan import (
    StreamPlan,
    check_deliveries,
    fanout_roles,
    fanout_settled,
)
from loadtest.harness import Harness
from loadtest.report import Summary
from loadtest.runner import RunState, Scenario
from loadtest.scenarios.common import LiveStreams
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats


class TipsScenario(Scenario):
    name = "tips"
    moves_money = True

    def describe(self) -> str:
        p = self.params
        return f"{p['fans']} fans, {p['rate']} tips/s of {p['amount']} token(s), {p['duration']} s"

    def seed_request(self) -> SeedRequest:
        return SeedRequest(
            fans=int(self.params["fans"]),
            creators=1,
            tokens=self.options.tokens,
            rate=self.options.rate,
        )

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        self.live = LiveStreams()
        creator = env.roster.take("creator", 1)
        fans = env.roster.take("fan", int(self.params["fans"]))
        await self.live.start(env, creator, "loadtest tips")
        users = [[u.id, u.token] for u in fans]
        plan = StreamPlan(
            0,
            self.live.urls[0],
            self.live.sessions[0],
            users,
            senders=len(users),
            rate=0.0,
            tip_rate=float(self.params["rate"]),
            tip_amount=int(self.params["amount"]),
        )
        roles = fanout_roles("digis", [plan], self.options.workers, duration=self.duration)
        return [{"roles": [role]} for role in roles]

    def settled(self, run: RunState) -> bool:
        return fanout_settled(run, 1, self.duration)

    def hard_deadline(self) -> float:
        return self.duration + 45.0

    async def cleanup(self, env: Harness, stats: Stats) -> None:
        if hasattr(self, "live"):
            await self.live.end(stats)

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        check_deliveries(stats, 1)
        committed = stats.get("ok:tip.send")
        go = env.probe.marks["go"].at
        span = max(self.duration, stats.last.get("tip_ok", go) - go)
        return {
            "tips sent": stats.get("tip.sent"),
            "tips committed": committed,
            "tips committed/s": committed / span,
            "tokens tipped": stats.get("tip.amount.s0"),
            "INSUFFICIENT_TOKENS": stats.errors.get("INSUFFICIENT_TOKENS", 0),
        }
