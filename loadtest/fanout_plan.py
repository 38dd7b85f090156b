"""Planning and judging a fan-out run: streams dealt over workers, deliveries owed.

The parent side of :mod:`loadtest.fanout`: :func:`fanout_roles` turns
streams (:class:`StreamPlan`) into one :class:`~loadtest.fanout.FanoutRole`
params dict per worker; :func:`expected_deliveries`, :func:`check_deliveries`
and :func:`fanout_settled` read the merged counters the roles report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loadtest.report import total
from loadtest.stats import Stats

if TYPE_CHECKING:
    from loadtest.runner import RunState


@dataclass
class StreamPlan:
    """One stream of a fan-out run, before it is dealt over workers."""

    index: int
    url: str
    session: str
    users: list[Any]
    senders: int
    rate: float
    tip_rate: float = 0.0
    tip_amount: int = 1


def fanout_roles(
    dialect: str,
    streams: list[StreamPlan],
    workers: int,
    *,
    duration: float,
    text_bytes: int = 48,
    concurrency: int = 100,
) -> list[dict[str, Any]]:
    """One :class:`FanoutRole` params dict per worker.

    Each stream's senders are dealt round-robin first, then its other
    viewers, so every worker gets a fair share of both; a worker's send rate
    for a stream is the stream's rate times its share of the senders.
    """
    roles: list[dict[str, Any]] = [
        {
            "role": "loadtest.fanout:FanoutRole",
            "dialect": dialect,
            "duration": duration,
            "text_bytes": text_bytes,
            "concurrency": concurrency,
            "groups": [],
        }
        for _ in range(max(1, workers))
    ]
    for stream in streams:
        senders = stream.users[: stream.senders]
        others = stream.users[stream.senders :]
        for w, role in enumerate(roles):
            mine = senders[w :: len(roles)]
            share = len(mine) / len(senders) if senders else 0.0
            role["groups"].append(
                {
                    "url": stream.url,
                    "session": stream.session,
                    "stream": stream.index,
                    "users": mine + others[w :: len(roles)],
                    "senders": len(mine),
                    "rate": stream.rate * share,
                    "tip_rate": stream.tip_rate * share,
                    "tip_amount": stream.tip_amount,
                }
            )
    return roles


def expected_deliveries(stats: Stats, streams: int) -> tuple[float, float]:
    """(chat, tip) deliveries owed: per stream, accepted x viewers connected."""
    chat = tip = 0.0
    for k in range(streams):
        viewers = stats.get(f"viewers.s{k}")
        chat += stats.get(f"chat.accepted.s{k}") * viewers
        tip += stats.get(f"tip.accepted.s{k}") * viewers
    return chat, tip


def check_deliveries(stats: Stats, streams: int) -> None:
    """Add check ``deliveries = accepted x viewers`` once per stream."""
    for k in range(streams):
        viewers = stats.get(f"viewers.s{k}")
        for kind in ("chat", "tip"):
            accepted = stats.get(f"{kind}.accepted.s{k}")
            got = stats.get(f"deliveries.{kind}.s{k}")
            if not accepted and not got:
                continue
            stats.check(
                f"{kind} deliveries = accepted x viewers",
                got == accepted * viewers,
                f"stream {k}: {got:.0f} delivered, {accepted:.0f} accepted x {viewers:.0f} viewers",
            )


def fanout_settled(run: RunState, streams: int, duration: float) -> bool:
    """After sending: every request was answered and every owed chat/tip
    delivery arrived (or deliveries stalled for 3 s, or 30 s passed)."""
    if run.elapsed < duration or not run.all_done:
        return False
    chat, tip = expected_deliveries(run.live, streams)
    got = total(run.live, "deliveries.chat.") + total(run.live, "deliveries.tip.")
    if got >= chat + tip and run.live.get("inflight") == 0:
        return True
    return run.unchanged_for("deliveries.") >= 3.0 or run.elapsed > duration + 30
