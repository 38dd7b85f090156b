"""``digis loadtest compare``: Digis stream fan-out vs a bare aiohttp loop and python-socketio.

Back to back on this machine, with the same client (:mod:`loadtest.fanout`:
the same lean WebSocket viewers, senders and sink for every server), for
each server and each publish rate in ``--rates``: ``--viewers`` viewers in
one stream/room, ``ceil(rate / 1.5)`` of them sending, for ``--duration``
seconds, then a drain. Each step is a fresh set of worker processes and
sockets; each server is a fresh process (Digis: spawned and seeded as in
the other scenarios, or the ``--url`` server with ``--seed-file``; one new
stream per step, so the seed needs a creator per rate).

Per step: deliveries/s (up to the last delivery), publish->receive p50/p99,
server CPU microseconds per delivery, the share of owed deliveries that
arrived. A step is *unsaturated* when everything owed arrived, at >= 95 %
of the offered rate (rate x viewers), with p99 under 100 ms.

Ratios printed at the end: Digis' peak deliveries/s over the bare loop's;
Digis' best deliveries/s with p99 < 100 ms over python-socketio's; and each
server's CPU per delivery at its highest unsaturated rate. Digis' rates are
capped at the server's stream-wide chat limit (200 lines/s); higher steps
are skipped for Digis and marked so.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from typing import Any

from loadtest.fanout_plan import (
    StreamPlan,
    check_deliveries,
    expected_deliveries,
    fanout_roles,
    fanout_settled,
)
from loadtest.harness import Harness, HarnessError, Options, Target, open_harness
from loadtest.probe import Probe
from loadtest.report import Summary, write_json
from loadtest.roster import Roster
from loadtest.runner import RunState, Scenario, run_scenario, senders_needed
from loadtest.scenarios.common import LiveStreams
from loadtest.scenarios.stream import PER_SENDER_RATE, STREAM_CHAT_LIMIT
from loadtest.spawn import SeedRequest, ServerProcess, peer_server
from loadtest.stats import Stats

P99_TARGET_MS = 100.0


class FanoutStep(Scenario):
    """One (server, rate) step of the comparison."""

    name = "compare-step"

    def describe(self) -> str:
        p = self.params
        return f"{p['dialect']}: {p['viewers']} viewers, {p['rate']} lines/s, {p['duration']} s"

    def seed_request(self) -> SeedRequest:
        raise AssertionError("compare seeds once for all steps")

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        p = self.params
        viewers, rate = int(p["viewers"]), float(p["rate"])
        dialect = str(p["dialect"])
        self.live = LiveStreams()
        users: list[Any]
        if dialect == "digis":
            creator = env.roster.creators[int(p["step"])]
            await self.live.start(env, [creator], "loadtest compare")
            session, url = self.live.sessions[0], self.live.urls[0]
            users = [[u.id, u.token] for u in env.roster.fans[:viewers]]
        else:
            session, url, users = "", env.targets[0].url, [None] * viewers
        senders = min(viewers, senders_needed(rate, PER_SENDER_RATE))
        plan = StreamPlan(0, url, session, users, senders, rate)
        roles = fanout_roles(
            dialect,
            [plan],
            self.options.workers,
            duration=self.duration,
            text_bytes=int(p["text_bytes"]),
        )
        return [{"roles": [role]} for role in roles]

    def settled(self, run: RunState) -> bool:
        return fanout_settled(run, 1, self.duration)

    def hard_deadline(self) -> float:
        return self.duration + 45.0

    async def cleanup(self, env: Harness, stats: Stats) -> None:
        if self.live.clients:
            await self.live.end(stats)

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        check_deliveries(stats, 1)
        chat, _tip = expected_deliveries(stats, 1)
        return {"owed": chat}


@dataclass
class Step:
    server: str
    rate: float
    viewers: int
    offered_per_s: float
    deliveries_per_s: float
    delivered_share: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_delivery: float
    server_cpu_percent: float
    client_us_per_delivery: float
    machine_busy_cores: float
    errors: dict[str, int]
    unsaturated: bool
    skipped: str = ""


def _step_from(server: str, rate: float, viewers: int, summary: Summary) -> Step:
    owed = float(summary.figures.get("owed", 0.0))
    delivered = float(summary.counters.get("deliveries.chat.s0", 0.0))
    share = delivered / owed if owed else 0.0
    latency = summary.latency_ms.get("delivery", {})
    accepted = float(summary.counters.get("chat.accepted.s0", 0.0))
    connected = float(summary.counters.get("viewers.s0", 0.0))
    offered = accepted / float(summary.params["duration"]) * connected
    step = Step(
        server=server,
        rate=rate,
        viewers=viewers,
        offered_per_s=offered,
        deliveries_per_s=summary.rates["deliveries_per_s"],
        delivered_share=share,
        p50_ms=latency.get("p50", 0.0),
        p99_ms=latency.get("p99", 0.0),
        cpu_us_per_delivery=summary.server.get("cpu_us_per_delivery", 0.0),
        server_cpu_percent=summary.server.get("cpu_percent", 0.0),
        client_us_per_delivery=summary.client.get("cpu_seconds", 0.0) / max(1.0, delivered) * 1e6,
        machine_busy_cores=summary.machine.get("busy_cores", 0.0),
        errors=summary.errors,
        unsaturated=False,
    )
    step.unsaturated = (
        share >= 0.999
        and step.deliveries_per_s >= 0.95 * offered
        and step.p99_ms < P99_TARGET_MS
        and not summary.errors
    )
    return step


@contextlib.asynccontextmanager
async def _target(
    server: str, options: Options, viewers: int, steps: int
) -> AsyncIterator[Harness]:
    if server == "digis":
        seed = SeedRequest(fans=viewers, creators=steps, tokens=100, rate=60)
        async with open_harness(options, seed) as env:
            yield env
        return
    process: ServerProcess = peer_server(server)
    url = await asyncio.to_thread(process.start)
    probe = Probe([process.pid])
    await probe.start()
    try:
        yield Harness(options, [Target(url, process.pid)], Roster([], []), probe)
    finally:
        await probe.close()
        await asyncio.to_thread(process.stop)


def _best(steps: list[Step], server: str, unsaturated_only: bool) -> Step | None:
    mine = [s for s in steps if s.server == server and not s.skipped]
    if unsaturated_only:
        mine = [s for s in mine if s.p99_ms < P99_TARGET_MS and s.delivered_share >= 0.999]
    return max(mine, key=lambda s: s.deliveries_per_s, default=None)


SERVERS = ("digis", "bare", "sio")


def ratios(steps: list[Step]) -> dict[str, float]:
    """The comparison's figures and ratios (a server that did not run leaves its keys out).

    ``peak``: the most deliveries/s a server reached at any rate (on a shared
    two-core box, usually where server and client together run out of CPU);
    ``best with p99<100ms``: the most with p99 under 100 ms and nothing lost;
    ``CPU us/delivery``: at the server's highest unsaturated rate, and its
    inverse, the ``1-core ceiling``: deliveries/s one core would sustain for
    the server process alone, whatever the client costs.
    """
    out: dict[str, float] = {}
    for name in SERVERS:
        peak, fast = _best(steps, name, False), _best(steps, name, True)
        if peak is not None:
            out[f"{name} peak deliveries/s"] = peak.deliveries_per_s
        if fast is not None:
            out[f"{name} best deliveries/s with p99<100ms"] = fast.deliveries_per_s
        calm = [s for s in steps if s.server == name and s.unsaturated and s.cpu_us_per_delivery]
        if calm:
            top = max(calm, key=lambda s: s.rate)
            out[f"{name} CPU us/delivery (unsaturated, {top.rate:g}/s)"] = top.cpu_us_per_delivery
            out[f"{name} 1-core ceiling deliveries/s"] = 1e6 / top.cpu_us_per_delivery

    def ratio(label: str, a: str, b: str) -> None:
        if out.get(a) and out.get(b):
            out[label] = out[a] / out[b]

    ratio("digis/bare peak deliveries/s", "digis peak deliveries/s", "bare peak deliveries/s")
    ratio(
        "digis/sio deliveries/s at p99<100ms",
        "digis best deliveries/s with p99<100ms",
        "sio best deliveries/s with p99<100ms",
    )
    for other in ("bare", "sio"):
        ratio(
            f"digis/{other} 1-core ceiling",
            "digis 1-core ceiling deliveries/s",
            f"{other} 1-core ceiling deliveries/s",
        )
    return out


def render_compare(steps: list[Step], found: dict[str, float], viewers: int) -> str:
    head = (
        f"{'server':<7}{'rate/s':>8}{'offered/s':>11}{'deliv/s':>11}{'arrived':>9}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'us/deliv':>10}{'srv CPU':>9}{'cli us':>8}{'box':>6}  note"
    )
    lines = [f"digis loadtest compare: {viewers} viewers, one stream/room", "-" * len(head), head]
    for s in steps:
        if s.skipped:
            lines.append(f"{s.server:<7}{s.rate:>8g}  skipped: {s.skipped}")
            continue
        note = "ok" if s.unsaturated else "saturated"
        if s.errors:
            note += " " + ",".join(f"{k}:{v}" for k, v in s.errors.items())
        lines.append(
            f"{s.server:<7}{s.rate:>8g}{s.offered_per_s:>11,.0f}{s.deliveries_per_s:>11,.0f}"
            f"{s.delivered_share:>9.1%}{s.p50_ms:>9.1f}{s.p99_ms:>9.1f}"
            f"{s.cpu_us_per_delivery:>10.1f}{s.server_cpu_percent:>8.0f}%"
            f"{s.client_us_per_delivery:>8.1f}{s.machine_busy_cores:>6.2f}  {note}"
        )
    lines.append(
        "us/deliv: server CPU per delivery; cli us: client CPU per delivery; "
        "box: cores busy machine-wide"
    )
    lines.append("")
    for name, value in found.items():
        lines.append(f"{name:<52}{value:>12,.2f}")
    for name in SERVERS:
        mine = [s for s in steps if s.server == name and not s.skipped]
        if mine and f"{name} best deliveries/s with p99<100ms" not in found:
            low = min(mine, key=lambda s: s.rate)
            lines.append(
                f"{name}: p99 >= 100 ms at every rate tried (at {low.rate:g}/s: {low.p99_ms:.0f} ms)"
            )
    return "\n".join(lines)


def plot_compare(steps: list[Step], path: Any) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'digis[plot]')"
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name in ("digis", "bare", "sio"):
        mine = [s for s in steps if s.server == name and not s.skipped]
        if mine:
            rates = [s.rate for s in mine]
            left.plot(rates, [s.deliveries_per_s for s in mine], marker="o", label=name)
            right.plot(rates, [s.p99_ms for s in mine], marker="o", label=name)
    left.set_xlabel("publish rate (lines/s)")
    left.set_ylabel("deliveries/s")
    right.set_xlabel("publish rate (lines/s)")
    right.set_ylabel("p99 publish->receive (ms)")
    right.set_yscale("log")
    for ax in (left, right):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"


async def run_compare(params: dict[str, Any], options: Options) -> int:
    """Run every (server, rate) step; print the table; 0 unless a step failed to run."""
    rates = [float(r) for r in str(params["rates"]).split(",") if r.strip()]
    servers = [s.strip() for s in str(params["servers"]).split(",") if s.strip()]
    viewers = int(params["viewers"])
    unknown = set(servers) - {"digis", "bare", "sio"}
    if unknown or not rates:
        raise HarnessError(f"--servers takes digis,bare,sio; --rates a list (got {unknown})")
    steps: list[Step] = []
    for server in servers:
        if server == "sio" and importlib.util.find_spec("socketio") is None:
            print("compare: skipping sio: python-socketio is not installed (the `bench` extra)")
            continue
        async with _target(server, options, viewers, len(rates)) as env:
            for i, rate in enumerate(rates):
                if server == "digis" and rate > STREAM_CHAT_LIMIT:
                    steps.append(
                        _skipped(server, rate, viewers, "over the 200 lines/s stream limit")
                    )
                    continue
                step_params = {
                    "dialect": server,
                    "viewers": viewers,
                    "rate": rate,
                    "duration": params["duration"],
                    "text_bytes": params["text_bytes"],
                    "step": i,
                }
                summary = await run_scenario(FanoutStep(step_params, options), env)
                steps.append(_step_from(server, rate, viewers, summary))
    found = ratios(steps)
    print(render_compare(steps, found, viewers), flush=True)
    if options.json_path is not None:
        write_json(options.json_path, {"steps": [asdict(s) for s in steps], "ratios": found})
    if options.plot_path is not None:
        print(plot_compare(steps, options.plot_path), flush=True)
    return 0


def _skipped(server: str, rate: float, viewers: int, why: str) -> Step:
    return Step(server, rate, viewers, 0, 0, 0, 0, 0, 0, 0, 0, 0, {}, False, skipped=why)
