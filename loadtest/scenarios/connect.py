"""``connect``: open N authenticated sockets as fast as possible, then hold them idle.

The measured phase starts at *go*: every worker opens its share of the
sockets with ``--concurrency`` upgrades in flight, each one a distinct
seeded fan (upgrade, ``hello``, ``auth``, answer). The ``handshake``
histogram is that whole sequence per socket. Once every socket is open the
run holds them for ``--hold`` seconds, then measures the server's RSS.

Figures: handshakes/s (authenticated sockets / time from go to the last
one), KiB per idle socket ((RSS at end - RSS at go) / sockets), and the
server's own count of open sockets. Check: the server's
``digis_connections_open`` grew by exactly the number of sockets opened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from loadtest.harness import Harness
from loadtest.lean import LeanClient, LeanError
from loadtest.report import Summary
from loadtest.runner import RunState, Scenario, split
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats
from loadtest.workers import WorkerContext


class ConnectRole:
    """Opens ``users`` (``[id, token, ws_url]``) during the measured phase."""

    def __init__(self, ctx: WorkerContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.users: list[list[Any]] = params["users"]
        self.concurrency = int(params.get("concurrency", 200))
        self.clients: list[LeanClient] = []

    async def setup(self) -> None:
        """Nothing before *go*: connecting is what this scenario measures."""

    async def run(self) -> None:
        limit = asyncio.Semaphore(self.concurrency)
        stats = self.ctx.stats

        async def one(user: list[Any]) -> None:
            async with limit:
                client = LeanClient(str(user[2]), str(user[1]), stats)
                started = time.perf_counter()
                try:
                    await client.open()
                except LeanError as exc:
                    stats.error(exc.code)
                    return
                stats.observe("handshake", (time.perf_counter() - started) * 1000)
                stats.moment("opened", time.time())
                stats.add("clients.connected")
                self.clients.append(client)

        await asyncio.gather(*(one(user) for user in self.users))

    async def close(self) -> None:
        for client in self.clients:
            client.close()
        await asyncio.sleep(0.2)


class ConnectScenario(Scenario):
    name = "connect"

    def describe(self) -> str:
        p = self.params
        return f"{p['clients']} sockets, {p['concurrency']} in flight per worker"

    def seed_request(self) -> SeedRequest:
        return SeedRequest(
            fans=int(self.params["clients"]), creators=1, tokens=0, rate=self.options.rate
        )

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        fans = env.roster.take("fan", int(self.params["clients"]))
        users = [[u.id, u.token, env.target(i).ws_url] for i, u in enumerate(fans)]
        self.done_at = 0.0
        return [
            {
                "roles": [
                    {
                        "role": "loadtest.scenarios.connect:ConnectRole",
                        "users": part,
                        "concurrency": self.params["concurrency"],
                    }
                ]
            }
            for part in split(users, self.options.workers)
        ]

    def hard_deadline(self) -> float:
        return 120.0 + float(self.params["clients"]) / 50

    def settled(self, run: RunState) -> bool:
        if not run.all_done:
            return False
        if not self.done_at:
            self.done_at = run.now
        return run.now - self.done_at >= float(self.params["hold"])

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        connected = stats.get("clients.connected")
        go = env.probe.marks["go"].at
        last = stats.last.get("opened", go)
        figures: dict[str, Any] = {
            "sockets opened": connected,
            "handshakes/s": connected / max(1e-6, last - go),
        }
        marks = env.probe.marks
        if env.probe.watching and connected:
            grown = marks["end"].rss - marks["go"].rss
            figures["KiB per idle socket"] = grown / connected / 1024
        delta = env.probe.delta("go", "end")
        key = "metrics:digis_connections_open"
        if key in delta:
            figures["server-side sockets opened"] = delta[key]
            stats.check(
                "server counts every socket open",
                delta[key] == connected,
                f"digis_connections_open grew by {delta[key]:.0f}, clients opened {connected:.0f}",
            )
        return figures
