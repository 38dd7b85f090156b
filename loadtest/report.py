"""The summary of a run: the table printed at the end, ``--json`` and ``--plot``.

Counting conventions (every scenario follows them, so the table is uniform):

* ``req:<type>`` counters are requests sent, ``ok:<type>`` the successful
  answers; ``rtt:<type>`` histograms their round trips;
* ``deliveries.*`` counters are events received (chat lines, tips, ticks);
  the ``delivery`` histogram is publish->receive latency of chat lines;
* ``clients.connected`` is sockets that opened and authenticated.

Rates are per second of the measured window ("go" to "end"); deliveries/s
uses the window up to the last delivery seen, so a drain wait after the
senders stopped does not dilute it. Server CPU is user+system time of the
server process(es) over the window; per delivery it is that time divided
by all deliveries (so it includes answering the senders' requests).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from loadtest.stats import Histogram, Stats

if TYPE_CHECKING:
    from loadtest.harness import Harness

MIB = 1024 * 1024


class Sample(NamedTuple):
    """The parent's once-a-second view of a run: merged counters and the server."""

    at: float
    counters: dict[str, float]
    rss: int
    cpu: float
    delivery: Histogram | None


@dataclass
class Summary:
    scenario: str
    title: str
    params: dict[str, Any]
    window_seconds: float
    clients: int
    requests: int
    requests_ok: int
    deliveries: int
    rates: dict[str, float]
    latency_ms: dict[str, dict[str, float]]
    errors: dict[str, int]
    server: dict[str, float]
    client: dict[str, float]
    machine: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every check passed (a run without checks is ok)."""
        return all(c["failed"] == 0 and c["passed"] > 0 for c in self.checks.values())

    def refresh_checks(self, stats: Stats) -> None:
        self.checks = stats.to_dict()["checks"]
        self.errors = dict(sorted(stats.errors.items()))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data


def total(stats: Stats, prefix: str) -> float:
    return sum(v for k, v in stats.counters.items() if k.startswith(prefix))


def progress_line(elapsed: float, live: Stats, samples: list[Sample]) -> str:
    """One line: clients, request and delivery counts with current rates, p99, server."""
    requests = total(live, "req:")
    deliveries = total(live, "deliveries.")
    rate_req = rate_del = cpu_pct = 0.0
    rss = 0
    if len(samples) >= 2:
        (t0, c0, _, cpu0, _h0), (t1, _c1, rss, cpu1, _h1) = samples[-2], samples[-1]
        span = max(1e-6, t1 - t0)
        rate_req = (requests - sum(v for k, v in c0.items() if k.startswith("req:"))) / span
        rate_del = (
            deliveries - sum(v for k, v in c0.items() if k.startswith("deliveries."))
        ) / span
        cpu_pct = (cpu1 - cpu0) / span * 100
    elif samples:
        rss = samples[-1][2]
    p99 = live.histograms["delivery"].percentile(99) if "delivery" in live.histograms else 0.0
    errors = sum(live.errors.values())
    server = f"  server cpu {cpu_pct:.0f}% rss {rss / MIB:.0f}MiB" if rss else ""
    return (
        f"[{elapsed:6.1f}s] clients {live.get('clients.connected'):.0f}"
        f"  req {requests:.0f} ({rate_req:.0f}/s)"
        f"  delivered {deliveries:.0f} ({rate_del:.0f}/s)"
        f"  p99 {p99:.1f}ms  errors {errors}{server}"
    )


def build_summary(
    scenario: str,
    title: str,
    params: dict[str, Any],
    stats: Stats,
    env: Harness,
    samples: list[Sample],
) -> Summary:
    """Combine the workers' Stats with the probe's marks into a :class:`Summary`."""
    probe = env.probe
    delta = probe.delta("go", "end")
    go = probe.marks["go"].at if "go" in probe.marks else 0.0
    window = max(1e-6, delta.get("seconds", 0.0))
    deliveries = int(total(stats, "deliveries."))
    last = stats.last.get("delivery", 0.0)
    delivery_window = min(window, last - go) if last > go else window
    requests = int(total(stats, "req:"))
    server: dict[str, float] = {}
    if probe.watching and "go" in probe.marks:
        cpu = delta.get("cpu_seconds", 0.0)
        server = {
            "rss_go_mib": probe.marks["go"].rss / MIB,
            "rss_end_mib": probe.marks["end"].rss / MIB if "end" in probe.marks else 0.0,
            "rss_peak_mib": max(probe.peak_rss(go), probe.marks["go"].rss) / MIB,
            "cpu_seconds": cpu,
            "cpu_percent": cpu / window * 100,
        }
        if deliveries:
            server["cpu_us_per_delivery"] = cpu / deliveries * 1e6
    if probe.backends and "go" in probe.marks:
        server["backend_cpu_seconds"] = delta.get("backend_cpu_seconds", 0.0)
    machine = {"busy_cores": delta.get("machine_busy_seconds", 0.0) / window}
    series: dict[str, list[float]] = {"t": [], "deliveries_per_s": [], "requests_per_s": []}
    series.update({"server_cpu_percent": [], "server_rss_mib": [], "delivery_p99_ms": []})
    for (t0, c0, _r0, cpu0, h0), (t1, c1, rss1, cpu1, h1) in itertools.pairwise(samples):
        span = max(1e-6, t1 - t0)
        series["t"].append(round(t1 - go, 3))
        for name, prefix in (("deliveries_per_s", "deliveries."), ("requests_per_s", "req:")):
            now_total = sum(v for k, v in c1.items() if k.startswith(prefix))
            before = sum(v for k, v in c0.items() if k.startswith(prefix))
            series[name].append(round((now_total - before) / span, 1))
        series["server_cpu_percent"].append(round((cpu1 - cpu0) / span * 100, 1))
        series["server_rss_mib"].append(round(rss1 / MIB, 1))
        interval = h1.since(h0 or Histogram()) if h1 is not None else Histogram()
        series["delivery_p99_ms"].append(round(interval.percentile(99), 2))
    summary = Summary(
        scenario=scenario,
        title=title,
        params=params,
        window_seconds=window,
        clients=int(stats.get("clients.connected")),
        requests=requests,
        requests_ok=int(total(stats, "ok:")),
        deliveries=deliveries,
        rates={
            "requests_per_s": requests / window,
            "deliveries_per_s": deliveries / max(1e-6, delivery_window),
        },
        latency_ms={name: h.summary() for name, h in sorted(stats.histograms.items())},
        errors=dict(sorted(stats.errors.items())),
        server=server,
        client={
            "workers": float(env.options.workers),
            "cpu_seconds": stats.get("client_cpu_seconds"),
        },
        machine=machine,
        series=series,
        counters=dict(sorted(stats.counters.items())),
    )
    summary.refresh_checks(stats)
    return summary


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.2f}" if abs(value) >= 10 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(summary: Summary) -> str:
    """The human-readable table printed at the end of a run."""
    s = summary
    lines = [f"digis loadtest {s.scenario}: {s.title}", "-" * 72]

    def row(name: str, value: str) -> None:
        lines.append(f"{name:<32}{value}")

    row("window", f"{s.window_seconds:.1f} s (go -> end)")
    row("clients", _fmt(s.clients))
    row(
        "requests",
        f"{_fmt(s.requests)} sent, {_fmt(s.requests_ok)} ok ({s.rates['requests_per_s']:,.0f}/s)",
    )
    row("events delivered", f"{_fmt(s.deliveries)} ({s.rates['deliveries_per_s']:,.0f}/s)")
    if s.latency_ms:
        lines.append(f"{'latency (ms)':<32}{'count':>10}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}")
        for name, h in s.latency_ms.items():
            if not h["count"]:
                continue
            lines.append(
                f"  {name:<30}{int(h['count']):>10,}{h['p50']:>9.2f}{h['p95']:>9.2f}"
                f"{h['p99']:>9.2f}{h['max']:>9.1f}"
            )
    row("errors", ", ".join(f"{k} {v:,}" for k, v in s.errors.items()) or "none")
    if s.server:
        srv = s.server
        text = (
            f"RSS {srv['rss_go_mib']:.0f} -> {srv['rss_end_mib']:.0f} MiB "
            f"(peak {srv['rss_peak_mib']:.0f}), CPU {srv['cpu_seconds']:.1f} s "
            f"({srv['cpu_percent']:.0f}% of a core)"
        )
        if "cpu_us_per_delivery" in srv:
            text += f", {srv['cpu_us_per_delivery']:.1f} us/delivery"
        row("server", text)
        if "backend_cpu_seconds" in srv:
            row("postgres CPU", f"{srv['backend_cpu_seconds']:.1f} s")
    else:
        row("server", "RSS/CPU unknown (pass --server-pid)")
    row("client", f"{s.client['cpu_seconds']:.1f} CPU s in {s.client['workers']:.0f} worker(s)")
    if s.machine.get("busy_cores"):
        accounted = (
            s.server.get("cpu_seconds", 0.0)
            + s.server.get("backend_cpu_seconds", 0.0)
            + s.client["cpu_seconds"]
        ) / s.window_seconds
        row(
            "machine",
            f"{s.machine['busy_cores']:.2f} cores busy on average "
            f"({accounted:.2f} accounted to server, postgres and clients)",
        )
    for name, value in s.figures.items():
        row(name, _fmt(value))
    if s.checks:
        lines.append("checks")
    for name, check in s.checks.items():
        verdict = "PASS" if check["failed"] == 0 and check["passed"] > 0 else "FAIL"
        lines.append(f"  {verdict}  {name} ({check['passed']} passed, {check['failed']} failed)")
        for sample in check["samples"][:3]:
            lines.append(f"        {sample}")
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str) + "\n", "utf-8")


def plot_series(summary: Summary, path: Path) -> str:
    """Throughput, server CPU and RSS over time as a PNG; returns a message for the user."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'digis[plot]')"
    t = summary.series.get("t", [])
    latency = summary.series.get("delivery_p99_ms", [])
    rows = 3 if any(latency) else 2
    fig, axes = plt.subplots(rows, 1, figsize=(9, 3 * rows), sharex=True)
    top, bottom = axes[0], axes[-1]
    if rows == 3:
        axes[1].plot(t, latency, color="tab:purple", label="delivery p99 (per second)")
        axes[1].set_ylabel("p99 ms")
        axes[1].set_yscale("log")
        axes[1].legend(loc="upper right")
    top.plot(t, summary.series["deliveries_per_s"], label="deliveries/s")
    top.plot(t, summary.series["requests_per_s"], label="requests/s")
    top.set_ylabel("per second")
    top.legend(loc="upper right")
    top.set_title(f"digis loadtest {summary.scenario}: {summary.title}")
    bottom.plot(t, summary.series["server_cpu_percent"], color="tab:red", label="server CPU %")
    bottom.set_ylabel("CPU % of a core")
    bottom.set_xlabel("seconds since go")
    twin = bottom.twinx()
    twin.plot(t, summary.series["server_rss_mib"], color="tab:green", label="server RSS MiB")
    twin.set_ylabel("RSS MiB")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"
