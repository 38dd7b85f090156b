"""Watching the server under test: RSS and CPU (psutil), ``/metrics``, pg_stat_database.

:class:`Probe` samples every known server pid about twice a second while a
run is going (for the peak RSS and the plots) and takes labelled snapshots
(``mark("go")``, ``mark("end")``) whose differences the report uses:

* server CPU seconds -- user+system time of the server process itself;
* backend CPU seconds -- the embedded PostgreSQL postmaster and all of its
  children (only when the harness spawned the server, or ``--pg-pid``);
* ``/metrics`` counters (``digis_flush_seconds_count``,
  ``digis_ledger_batch_ops_{count,sum}``, ``digis_actors``...) -- when the
  target serves them (the peers do not);
* ``pg_stat_database`` of database ``digis`` (``xact_commit``, rows
  inserted/updated/deleted) -- only when a DSN is known.

Every source is optional; a missing one yields no figure, never an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field

import aiohttp
import psutil

_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)")


@dataclass
class Snapshot:
    at: float
    rss: int = 0
    cpu: float = 0.0
    backend_cpu: float = 0.0
    #: Machine-wide busy CPU seconds (all cores, all processes, softirq included).
    machine_busy: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    pg: dict[str, float] = field(default_factory=dict)


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> ``{"name{labels}": value}`` (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, raw = match.groups()
        with contextlib.suppress(ValueError):
            values[name + (labels or "")] = float(raw)
    return values


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (softirq and other users included)."""
    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times) - idle)


class Probe:
    """Samples the processes and endpoints of the server(s) under test."""

    def __init__(
        self,
        pids: list[int],
        *,
        metrics_urls: list[str] | None = None,
        backend_pids: list[int] | None = None,
        pg_dsn: str | None = None,
    ) -> None:
        self.processes: list[psutil.Process] = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                self.processes.append(psutil.Process(pid))
        self.backends: list[psutil.Process] = []
        for pid in backend_pids or []:
            with contextlib.suppress(psutil.Error):
                self.backends.append(psutil.Process(pid))
        self.metrics_urls = metrics_urls or []
        self.pg_dsn = pg_dsn
        self.marks: dict[str, Snapshot] = {}
        #: (wall time, rss bytes, cpu seconds) samples for plots and the peak.
        self.samples: list[tuple[float, int, float]] = []
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def watching(self) -> bool:
        return bool(self.processes)

    def rss_and_cpu(self) -> tuple[int, float]:
        rss, cpu = 0, 0.0
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                rss += process.memory_info().rss
                cpu += _cpu_seconds(process)
        return rss, cpu

    def backend_cpu(self) -> float:
        total = 0.0
        for root in self.backends:
            with contextlib.suppress(psutil.Error):
                total += _cpu_seconds(root)
                for child in root.children(recursive=True):
                    with contextlib.suppress(psutil.Error):
                        total += _cpu_seconds(child)
        return total

    async def start(self) -> None:
        """Begin background sampling (twice a second)."""
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        self._task = asyncio.get_running_loop().create_task(self._sample_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._http is not None:
            await self._http.close()

    async def _sample_loop(self) -> None:
        while True:
            rss, cpu = self.rss_and_cpu()
            self.samples.append((time.time(), rss, cpu))
            await asyncio.sleep(0.5)

    def peak_rss(self, since: float = 0.0) -> int:
        return max((rss for at, rss, _ in self.samples if at >= since), default=0)

    async def mark(self, name: str) -> Snapshot:
        """Take and keep a labelled snapshot of every source."""
        rss, cpu = self.rss_and_cpu()
        snapshot = Snapshot(time.time(), rss, cpu, self.backend_cpu(), machine_busy())
        snapshot.metrics = await self.scrape()
        snapshot.pg = await self.pg_stats()
        self.marks[name] = snapshot
        return snapshot

    async def scrape(self) -> dict[str, float]:
        """Sum of every target's ``/metrics`` values ({} if none answer)."""
        total: dict[str, float] = {}
        if self._http is None:
            return total
        for url in self.metrics_urls:
            try:
                async with self._http.get(url + "/metrics") as response:
                    if response.status != 200:
                        continue
                    text = await response.text()
            except (aiohttp.ClientError, TimeoutError):
                continue
            for key, value in parse_metrics(text).items():
                total[key] = total.get(key, 0.0) + value
        return total

    async def pg_stats(self) -> dict[str, float]:
        """``pg_stat_database`` counters of database ``digis`` ({} without a DSN)."""
        if not self.pg_dsn:
            return {}
        import asyncpg

        try:
            conn = await asyncpg.connect(self.pg_dsn, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return {}
        try:
            row = await conn.fetchrow(
                "SELECT xact_commit, tup_inserted, tup_updated, tup_deleted"
                " FROM pg_stat_database WHERE datname = current_database()"
            )
        finally:
            await conn.close()
        return {key: float(value) for key, value in dict(row or {}).items()}

    def delta(self, start: str, end: str) -> dict[str, float]:
        """Differences between two marks: seconds, CPU, metrics and pg counters."""
        a, b = self.marks.get(start), self.marks.get(end)
        if a is None or b is None:
            return {}
        out = {
            "seconds": b.at - a.at,
            "cpu_seconds": b.cpu - a.cpu,
            "backend_cpu_seconds": b.backend_cpu - a.backend_cpu,
            "machine_busy_seconds": b.machine_busy - a.machine_busy,
        }
        for key, value in b.metrics.items():
            out["metrics:" + key] = value - a.metrics.get(key, 0.0)
        for key, value in b.pg.items():
            out["pg:" + key] = value - a.pg.get(key, 0.0)
        return out
