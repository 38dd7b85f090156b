"""``mixed``: a realistic blend -- mostly idle fans, a few streams, a few calls.

All at once, for ``--duration`` seconds:

* ``--idle`` fans connected and authenticated, each sending a ``ping``
  every ``IDLE_PING_EVERY`` seconds (apps do roughly that) and otherwise
  quiet -- the bulk of the sockets, as in production;
* ``--streams`` streams with ``--viewers`` each, ``--chat-rate`` lines/s and
  ``--tip-rate`` tips/s per stream;
* ``--calls`` metered calls lasting the whole run.

The checks of ``stream`` (deliveries = accepted x viewers, ``stream.end``
totals) and of ``calls`` (exact charge, balance drop, both sides agree)
all apply; figures add the PostgreSQL rates of ``calls``.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from loadtest.fanout_plan import check_deliveries, fanout_roles, fanout_settled
from loadtest.harness import Harness
from loadtest.lean import LeanClient, LeanError
from loadtest.report import Summary, total
from loadtest.runner import RunState, Scenario, split
from loadtest.scenarios.calls import call_rows, calls_role, postgres_figures
from loadtest.scenarios.common import LiveStreams
from loadtest.scenarios.stream import stream_plans
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats
from loadtest.workers import WorkerContext

IDLE_PING_EVERY = 15.0


class IdleRole:
    """Authenticated sockets that only ping now and then (``users``: ``[id, token, url]``)."""

    def __init__(self, ctx: WorkerContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.users: list[list[Any]] = params["users"]
        self.duration = float(params["duration"])
        self.clients: list[LeanClient] = []

    async def setup(self) -> None:
        limit = asyncio.Semaphore(100)
        stats = self.ctx.stats

        async def one(user: list[Any]) -> None:
            async with limit:
                client = LeanClient(str(user[2]), str(user[1]), stats)
                try:
                    await client.open()
                except LeanError as exc:
                    stats.error(exc.code)
                    return
                self.clients.append(client)
                stats.add("clients.connected")
                stats.add("clients.idle")

        await asyncio.gather(*(one(user) for user in self.users))

    async def run(self) -> None:
        if not self.clients:
            return
        order = random.sample(self.clients, len(self.clients))
        step = IDLE_PING_EVERY / len(order)
        sent = 0
        while not self.ctx.stopping.is_set():
            elapsed = time.time() - self.ctx.go_at
            if elapsed >= self.duration:
                return
            while sent < int(elapsed / step):
                order[sent % len(order)].send("ping", {})
                sent += 1
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for client in self.clients:
            client.close()


class MixedScenario(Scenario):
    name = "mixed"
    moves_money = True

    def _counts(self) -> tuple[int, int, int, int]:
        p = self.params
        return int(p["idle"]), int(p["streams"]), int(p["viewers"]), int(p["calls"])

    def describe(self) -> str:
        idle, streams, viewers, calls = self._counts()
        p = self.params
        return (
            f"{idle} idle fans, {streams} streams x {viewers} viewers "
            f"({p['chat_rate']} lines/s, {p['tip_rate']} tips/s each), {calls} calls, "
            f"{p['duration']} s"
        )

    def seed_request(self) -> SeedRequest:
        idle, streams, viewers, calls = self._counts()
        return SeedRequest(
            fans=idle + streams * viewers + calls,
            creators=streams + calls,
            tokens=self.options.tokens,
            rate=self.options.rate,
        )

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        idle, streams, viewers, calls = self._counts()
        workers = self.options.workers
        self.streams = streams
        self.live = LiveStreams()
        if streams:
            await self.live.start(env, env.roster.take("creator", streams), "loadtest mixed")
        fanout: list[dict[str, Any] | None] = (
            list(
                fanout_roles(
                    "digis",
                    stream_plans(
                        self.live,
                        env.roster.take("fan", streams * viewers),
                        max(1, streams),
                        float(self.params["chat_rate"]) * streams,
                        float(self.params["tip_rate"]) * streams,
                    ),
                    workers,
                    duration=self.duration,
                )
            )
            if streams
            else [None] * workers
        )
        idle_users = [
            [u.id, u.token, env.target(i).ws_url]
            for i, u in enumerate(env.roster.take("fan", idle))
        ]
        pairs = call_rows(env, calls)
        call_params = {"duration": self.duration, "price": self.params["price"]}
        out = []
        for w, (idle_part, pair_part) in enumerate(
            zip(split(idle_users, workers), split(pairs, workers), strict=True)
        ):
            roles: list[dict[str, Any]] = [
                {
                    "role": "loadtest.scenarios.mixed:IdleRole",
                    "users": idle_part,
                    "duration": self.duration,
                },
                calls_role(pair_part, call_params),
            ]
            stream_role = fanout[w]
            if stream_role is not None:
                roles.append(stream_role)
            out.append({"roles": roles})
        return out

    def settled(self, run: RunState) -> bool:
        return fanout_settled(run, self.streams, self.duration)

    def setup_timeout(self) -> float:
        idle, streams, viewers, calls = self._counts()
        return 120.0 + (idle + streams * viewers + calls * 2) / 50

    def hard_deadline(self) -> float:
        return self.duration + 90.0

    def progress(self, live: Stats) -> str:
        return f"  calls active {live.get('calls.active'):.0f}"

    async def cleanup(self, env: Harness, stats: Stats) -> None:
        if hasattr(self, "live"):
            await self.live.end(stats)

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        if self.streams:
            check_deliveries(stats, self.streams)
        figures: dict[str, Any] = {
            "idle sockets": stats.get("clients.idle"),
            "chat lines accepted": total(stats, "chat.accepted."),
            "tips accepted": total(stats, "tip.accepted."),
            "calls ended": stats.get("calls.ended"),
        }
        figures.update(postgres_figures(env, summary.window_seconds))
        return figures
