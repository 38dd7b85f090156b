"""One scenario run, from the parent's side: prepare, go, watch, stop, summarize.

A :class:`Scenario` says how many users it needs, prepares parent-side
state (a creator going live...) and the per-worker params, decides when the
run has settled, and turns the merged :class:`~loadtest.stats.Stats` into
figures and checks. :func:`run_scenario` drives the common part:

    prepare -> workers connect -> all ready -> probe mark "go" -> go
    -> progress every second until settled (or the hard deadline)
    -> probe mark "end" -> stop -> final stats -> cleanup -> Summary

The measured window is "go" to "end": connection set-up before *go* is not
counted in rates or CPU figures (``connect`` measures it explicitly).
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from loadtest.harness import Harness, Options
from loadtest.report import Sample, Summary, build_summary, progress_line
from loadtest.spawn import SeedRequest
from loadtest.stats import Stats
from loadtest.workers import ROLES_WORKER, Fleet


@dataclass
class RunState:
    """What a scenario may look at while deciding whether the run has settled."""

    go_at: float
    now: float
    live: Stats
    all_done: bool
    #: The parent's once-a-second samples (time, counters, server), oldest first.
    samples: list[Sample] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        return self.now - self.go_at

    def unchanged_for(self, counter_prefix: str) -> float:
        """Seconds the sum of counters starting with ``counter_prefix`` has not moved."""
        if not self.samples:
            return 0.0

        def total(counters: dict[str, float]) -> float:
            return sum(v for k, v in counters.items() if k.startswith(counter_prefix))

        latest = total(self.samples[-1].counters)
        since = self.samples[-1].at
        for sample in reversed(self.samples):
            if total(sample.counters) != latest:
                break
            since = sample.at
        return self.now - since


class Scenario:
    """Base of the scenarios; subclasses set ``name``/``worker`` and override hooks."""

    name: ClassVar[str] = ""
    #: Whether the run moves tokens (then a spawned server's ledger is verified after it).
    moves_money: ClassVar[bool] = False

    def __init__(self, params: dict[str, Any], options: Options) -> None:
        self.params = params
        self.options = options

    @property
    def duration(self) -> float:
        return float(self.params.get("duration", 10.0))

    def describe(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params.items())

    def seed_request(self) -> SeedRequest:
        raise NotImplementedError

    async def prepare(self, env: Harness) -> list[dict[str, Any]]:
        raise NotImplementedError

    def settled(self, run: RunState) -> bool:
        return run.all_done

    def hard_deadline(self) -> float:
        """Seconds after *go* when the run is stopped whatever happens."""
        return self.duration + 60.0

    def setup_timeout(self) -> float:
        return 120.0

    def progress(self, live: Stats) -> str:
        return ""

    async def cleanup(self, env: Harness, stats: Stats) -> None:
        """Undo parent-side state (end streams...); may add checks to ``stats``."""

    def figures(self, stats: Stats, summary: Summary, env: Harness) -> dict[str, Any]:
        """Scenario-specific figures; add checks with ``stats.check`` before summary."""
        return {}


def split(items: list[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt round-robin into ``parts`` lists (some may be empty)."""
    out: list[list[Any]] = [[] for _ in range(max(1, parts))]
    for i, item in enumerate(items):
        out[i % len(out)].append(item)
    return out


def senders_needed(rate: float, per_sender: float) -> int:
    return max(1, math.ceil(rate / per_sender)) if rate > 0 else 0


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.every = 1.0 if self.tty else 2.0
        self.next_at = 0.0

    def show(self, text: str, now: float, final: bool = False) -> None:
        if self.quiet or (now < self.next_at and not final):
            return
        self.next_at = now + self.every
        if self.tty:
            end = "\n" if final else ""
            sys.stderr.write("\r\x1b[2K" + text + end)
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


async def run_scenario(scenario: Scenario, env: Harness) -> Summary:
    """Run ``scenario`` against ``env``; see the module docstring."""
    worker_params = await scenario.prepare(env)
    fleet = Fleet(ROLES_WORKER, worker_params)
    progress = _Progress(env.options.quiet)
    samples: list[Sample] = []
    stats = Stats()
    try:
        fleet.start()
        await fleet.wait_ready(scenario.setup_timeout())
        await env.probe.mark("go")
        go_at = fleet.go()
        while True:
            await asyncio.sleep(0.25)
            fleet.poll()
            now = time.time()
            live = fleet.live()
            if not samples or now - samples[-1].at >= 1.0:
                rss, cpu = env.probe.rss_and_cpu()
                delivery = live.histograms.get("delivery")
                samples.append(Sample(now, dict(live.counters), rss, cpu, delivery))
                line = progress_line(now - go_at, live, samples) + scenario.progress(live)
                progress.show(line, now)
            run = RunState(go_at, now, live, fleet.all_done, samples)
            overdue = run.elapsed > scenario.hard_deadline()
            if overdue or scenario.settled(run):
                break
        await env.probe.mark("end")
        progress.show(progress_line(time.time() - go_at, fleet.live(), samples), time.time(), True)
        stats = await fleet.finish()
        if overdue:
            stats.error("HARD_DEADLINE")
    finally:
        fleet.terminate()
        await scenario.cleanup(env, stats)
    if scenario.moves_money:
        verdict = await env.verify_ledger()
        if verdict is not None:
            consistent, output = verdict
            stats.check("ledger consistent (digis ledger verify)", consistent, output[-500:])
    summary = build_summary(
        scenario.name, scenario.describe(), scenario.params, stats, env, samples
    )
    summary.figures.update(scenario.figures(stats, summary, env))
    summary.refresh_checks(stats)
    return summary
