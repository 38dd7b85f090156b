"""``stream``: creators live, N viewers, chat at R lines/s (and tips): fan-out.

Each stream's creator (an SDK socket in the parent) goes live; viewers are
lean clients spread over the workers, and ``ceil(rate / per-sender rate)``
of them also send chat lines (each sender stays under the server's
per-user chat limit of 2/s; the stream-wide limit is 200 lines/s). After
``duration`` the run waits until every owed delivery arrived (or nothing
moved for 3 s), then checks, per stream:

* chat deliveries = accepted lines x viewers (and the same for tips);
* the server's ``stream.end`` totals equal the accepted lines and tips.

Figures: deliveries/s and publish->receive latency (``delivery``: the
sender's wall clock in the line's text vs. the viewer's receive time).
"""

from __future__ import annotations

from typing import Any

from loadtest.fanout_plan import (
    StreamPlan,
    check_deliveries,
    expected_deliveries,
    fanout_roles,
    fanout_settled,
)
from loadtest.harness import Harness
from loadtest.report import Summary, total
from loadtest.runner import RunState, Scenario, senders_needed
from loadtest.scenarios.common import LiveStreams
from loadtest.slow import SlowViewer
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats

#: Chat lines per second each sender sends (the server allows 2/s per user).
PER_SENDER_RATE = 1.5
SLOW_METRIC = "digis_slow_consumers_total"
#: The server's stream-wide chat limit (lines/s).
STREAM_CHAT_LIMIT = 200


def stream_plans(
    live: LiveStreams, fans: list[Any], streams: int, rate: float, tip_rate: float
) -> list[StreamPlan]:
    """Spread ``fans`` over the ``streams`` live streams, each chatting ``rate / streams``
    lines/s and tipping ``tip_rate / streams`` tips/s from just enough senders."""
    rate, tip_rate = rate / streams, tip_rate / streams
    plans = []
    for k in range(streams):
        users = [[u.id, u.token] for u in fans[k::streams]]
        senders = min(len(users), senders_needed(max(rate, tip_rate / 5), PER_SENDER_RATE))
        plans.append(StreamPlan(k, live.urls[k], live.sessions[k], users, senders, rate, tip_rate))
    return plans


class StreamScenario(Scenario):
    name = "stream"
    moves_money = True

    @property
    def streams(self) -> int:
        return max(1, int(self.params.get("streams", 1)))

    def describe(self) -> str:
        p = self.params
        return (
            f"{p['viewers']} viewers in {self.streams} stream(s), {p['rate']} lines/s, "
            f"{p.get('tip_rate', 0)} tips/s, {p['duration']} s"
        )

    @property
    def slow(self) -> int:
        return max(0, int(self.params.get("slow", 0)))

    def seed_request(self) -> SeedRequest:
        return SeedRequest(
            fans=int(self.params["viewers"]) + self.slow,
            creators=self.streams,
            tokens=self.options.tokens,
            rate=self.options.rate,
        )

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        self.live = LiveStreams()
        creators = env.roster.take("creator", self.streams)
        fans = env.roster.take("fan", int(self.params["viewers"]))
        await self.live.start(env, creators, "loadtest stream")
        self.slow_viewers: list[SlowViewer] = []
        self.slow_dropped_before = (await env.probe.scrape()).get(SLOW_METRIC, 0.0)
        for k, user in enumerate(env.roster.take("fan", self.slow)):
            viewer = SlowViewer()
            stream = k % self.streams
            await viewer.open(self.live.urls[stream], user.token, self.live.sessions[stream])
            self.slow_viewers.append(viewer)
        return [
            {"roles": [role]}
            for role in fanout_roles(
                "digis",
                self.plans(fans),
                self.options.workers,
                duration=self.duration,
                text_bytes=int(self.params.get("text_bytes", 48)),
            )
        ]

    def plans(self, fans: list[Any]) -> list[StreamPlan]:
        return stream_plans(
            self.live,
            fans,
            self.streams,
            float(self.params["rate"]),
            float(self.params.get("tip_rate", 0)),
        )

    def settled(self, run: RunState) -> bool:
        return fanout_settled(run, self.streams, self.duration)

    def hard_deadline(self) -> float:
        return self.duration + 45.0

    async def cleanup(self, env: Harness, stats: Stats) -> None:
        if self.slow:
            dropped = (await env.probe.scrape()).get(SLOW_METRIC, 0.0) - self.slow_dropped_before
            # Dropped only once a viewer owes more than DIGIS_SEND_BUFFER_BYTES
            # (plus kernel buffers): a figure, not a check.
            self.slow_dropped = int(dropped)
            for viewer in self.slow_viewers:
                viewer.close()
        if hasattr(self, "live"):
            await self.live.end(stats)

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        check_deliveries(stats, self.streams)
        chat, tip = expected_deliveries(stats, self.streams)
        accepted = total(stats, "chat.accepted.")
        slow = {"slow viewers dropped": self.slow_dropped} if self.slow else {}
        return {
            **slow,
            "chat lines accepted": accepted,
            "accepted lines/s": accepted / self.duration,
            "deliveries owed": chat + tip,
            "deliveries received": float(summary.deliveries),
        }
