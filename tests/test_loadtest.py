"""The load-test harness at tiny scale, against one real spawned ``digis serve``.

Every scenario runs for a few seconds with a handful of clients, through
``loadtest.cli.main`` exactly as ``digis loadtest`` runs it, and its JSON
summary is checked for consistency: deliveries equal accepted messages x
viewers, every call is billed exactly, nothing errored. No test asserts a
speed (benchmarks print figures; tests assert behaviour).

One server (embedded PostgreSQL and Redis) is spawned and seeded per module;
each test gets its own disjoint slice of the seeded users.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.cli import main
from loadtest.probe import parse_metrics
from loadtest.report import Summary, plot_series
from loadtest.spawn import (
    SeedRequest,
    ServerProcess,
    digis_server,
    loadtest_env,
    postgres_dsn,
    run_ledger_verify,
    run_seed,
)
from loadtest.stats import Histogram, Stats
from loadtest.wsclient import client_frame, mask_payload

SEED = SeedRequest(fans=90, creators=14, tokens=10_000, rate=60)
TIP_AMOUNT = 4_000  # two tips per fan succeed, the third is INSUFFICIENT_TOKENS


class Served:
    """The module's server and a dealer of disjoint seed files."""

    def __init__(
        self, process: ServerProcess, data_dir: Path, env: dict[str, str], seed: dict[str, Any]
    ) -> None:
        self.process = process
        self.env = env
        self.url = process.url
        self.data_dir = data_dir
        self.seed = seed
        self._next = {"fan": 0, "creator": 0}
        self._files = 0

    def seed_file(self, fans: int, creators: int) -> Path:
        """A seed file holding ``fans`` and ``creators`` no other test got."""
        picked: list[dict[str, Any]] = []
        for role, n in (("fan", fans), ("creator", creators)):
            pool = [u for u in self.seed["users"] if u["role"] == role]
            start = self._next[role]
            assert start + n <= len(pool), f"seed more {role}s for the tests"
            picked += pool[start : start + n]
            self._next[role] = start + n
        self._files += 1
        path = self.data_dir / f"slice{self._files}.json"
        path.write_text(json.dumps({**self.seed, "users": picked}))
        return path

    def args(self, fans: int, creators: int) -> list[str]:
        return [
            "--url",
            self.url,
            "--seed-file",
            str(self.seed_file(fans, creators)),
            "--server-pid",
            str(self.process.pid),
            "--quiet",
        ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("loadtest-server")
    env = loadtest_env(data_dir)
    process = digis_server(data_dir, env)
    process.start()
    try:
        run_seed(SEED, data_dir / "seed.json", env)
        seed = json.loads((data_dir / "seed.json").read_text())
        yield Served(process, data_dir, env, seed)
    finally:
        status = process.stop()
    assert status == 0, "".join(process.lines)


def run(argv: list[str], out: Path) -> tuple[int, dict[str, Any]]:
    code = main([*argv, "--json", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else {}


def assert_ledger_consistent(served: Served) -> None:
    consistent, output = run_ledger_verify(served.env)
    assert consistent, output


def checks_all_pass(summary: dict[str, Any], *names: str) -> None:
    assert summary["ok"], summary["checks"]
    for name in names:
        check = summary["checks"][name]
        assert check["passed"] > 0 and check["failed"] == 0, (name, check)


# --- scenarios ---------------------------------------------------------------------


def test_connect_opens_every_socket_and_the_server_counts_them(
    served: Served, tmp_path: Path
) -> None:
    code, s = run(
        ["connect", *served.args(20, 0), "--clients", "20", "--workers", "2"], tmp_path / "c.json"
    )
    assert code == 0
    assert s["clients"] == 20 and s["errors"] == {}
    assert s["latency_ms"]["handshake"]["count"] == 20
    assert s["figures"]["sockets opened"] == 20
    assert s["figures"]["handshakes/s"] > 0
    assert "KiB per idle socket" in s["figures"]
    checks_all_pass(s, "server counts every socket open")


def test_stream_delivers_every_accepted_line_to_every_viewer(
    served: Served, tmp_path: Path
) -> None:
    argv = ["stream", *served.args(12, 1), "--viewers", "12", "--rate", "8", "--tip-rate", "2"]
    code, s = run([*argv, "--duration", "2", "--workers", "2"], tmp_path / "s.json")
    assert code == 0, s.get("checks")
    counters = s["counters"]
    accepted, tips = counters["chat.accepted.s0"], counters["tip.accepted.s0"]
    assert accepted >= 10 and tips >= 2
    assert counters["viewers.s0"] == 12
    assert counters["deliveries.chat.s0"] == accepted * 12
    assert counters["deliveries.tip.s0"] == tips * 12
    assert s["deliveries"] == (accepted + tips) * 12
    assert s["latency_ms"]["delivery"]["count"] == accepted * 12
    assert s["errors"] == {}
    checks_all_pass(
        s,
        "chat deliveries = accepted x viewers",
        "tip deliveries = accepted x viewers",
        "stream.end totals = accepted",
    )


def test_calls_are_billed_exactly(served: Served, tmp_path: Path) -> None:
    argv = ["calls", *served.args(3, 3), "--calls", "3", "--duration", "3", "--price", "45"]
    argv += ["--pg-dsn", postgres_dsn(served.data_dir) or ""]
    code, s = run([*argv, "--workers", "1"], tmp_path / "k.json")
    assert code == 0, s.get("checks")
    assert s["errors"] == {}
    assert s["figures"]["calls ended"] == 3
    for name in (
        "tokens charged = floor(rate x seconds / 60)",
        "fan balance dropped by tokens charged",
        "creator's call.ended totals = fan's call.end totals",
        "creator earnings grew by creator_earned",
    ):
        assert s["checks"][name] == {"passed": 3, "failed": 0, "samples": []}
    assert s["counters"]["ok:call.end"] == 3
    assert "pg commits/s (pg_stat_database)" in s["figures"]
    assert s["figures"]["usage flushes/s (/metrics)"] > 0
    assert_ledger_consistent(served)


def test_tips_commit_until_the_tokens_run_out(served: Served, tmp_path: Path) -> None:
    fans = 8
    argv = ["tips", *served.args(fans, 1), "--fans", str(fans), "--rate", "8"]
    argv += ["--amount", str(TIP_AMOUNT), "--duration", "3", "--workers", "1"]
    code, s = run(argv, tmp_path / "t.json")
    assert code == 0, s.get("checks")
    sent = int(s["counters"]["tip.sent"])
    per_fan = [sent // fans + (1 if i < sent % fans else 0) for i in range(fans)]
    affordable = SEED.tokens // TIP_AMOUNT
    committed = sum(min(n, affordable) for n in per_fan)
    assert s["figures"]["tips committed"] == committed
    assert s["figures"]["INSUFFICIENT_TOKENS"] == sent - committed > 0
    assert s["errors"] == {"INSUFFICIENT_TOKENS": sent - committed}
    assert s["figures"]["tokens tipped"] == committed * TIP_AMOUNT
    assert s["counters"]["deliveries.tip.s0"] == committed * fans
    checks_all_pass(s, "tip deliveries = accepted x viewers", "stream.end totals = accepted")
    assert_ledger_consistent(served)


def test_mixed_runs_idle_streams_and_calls_together(served: Served, tmp_path: Path) -> None:
    argv = ["mixed", *served.args(10 + 2 * 4 + 2, 2 + 2), "--idle", "10", "--streams", "2"]
    argv += ["--viewers", "4", "--chat-rate", "4", "--tip-rate", "1", "--calls", "2"]
    code, s = run([*argv, "--duration", "3", "--workers", "2"], tmp_path / "m.json")
    assert code == 0, s.get("checks")
    assert s["errors"] == {}
    assert s["figures"]["idle sockets"] == 10
    assert s["figures"]["calls ended"] == 2
    assert s["clients"] == 10 + 8 + 4
    checks_all_pass(
        s,
        "chat deliveries = accepted x viewers",
        "stream.end totals = accepted",
        "tokens charged = floor(rate x seconds / 60)",
        "fan balance dropped by tokens charged",
    )
    assert_ledger_consistent(served)


def test_compare_digis_and_the_bare_peer(served: Served, tmp_path: Path) -> None:
    argv = ["compare", *served.args(10, 1), "--servers", "digis,bare", "--viewers", "10"]
    code, data = run([*argv, "--rates", "20", "--duration", "1"], tmp_path / "p.json")
    assert code == 0
    steps = {step["server"]: step for step in data["steps"]}
    assert set(steps) == {"digis", "bare"}
    for step in steps.values():
        assert step["delivered_share"] == 1.0 and step["errors"] == {}
        assert step["deliveries_per_s"] > 0 and step["p99_ms"] >= step["p50_ms"] > 0
        assert step["cpu_us_per_delivery"] >= 0  # clock-tick granularity: may be 0
    assert "digis/bare peak deliveries/s" in data["ratios"]


def test_compare_socketio_peer(tmp_path: Path) -> None:
    pytest.importorskip("socketio", reason="python-socketio (the `bench` extra) is not installed")
    argv = ["compare", "--servers", "sio", "--viewers", "10", "--rates", "20", "--duration", "1"]
    code, data = run([*argv, "--quiet"], tmp_path / "sio.json")
    assert code == 0
    (step,) = data["steps"]
    assert step["server"] == "sio" and step["delivered_share"] == 1.0 and step["errors"] == {}


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert main([]) == 2
    assert main(["stream", "--url", "http://example.com:80", "--seed-file", "x"]) == 2
    assert main(["stream", "--url", "http://127.0.0.1:9", "--seed-file", str(tmp_path / "no")]) == 2
    assert main(["connect", "--clients", "1000000"]) == 2
    assert main(["stream", "--duration", "0"]) == 2


# --- building blocks ---------------------------------------------------------------


def test_histogram_percentiles_are_within_two_percent() -> None:
    hist = Histogram()
    values = [0.05 * i for i in range(1, 10_001)]
    for value in values:
        hist.record(value)
    for q in (50, 95, 99):
        exact = values[math.ceil(len(values) * q / 100) - 1]
        assert abs(hist.percentile(q) - exact) / exact < 0.02
    assert hist.percentile(100) == hist.maximum == values[-1]
    before = Histogram()
    before.merge(hist)
    other = Histogram()
    other.record(1000.0)
    hist.merge(other)
    assert hist.count == 10_001 and hist.maximum == 1000.0
    recent = hist.since(before)
    assert recent.count == 1 and abs(recent.percentile(50) - 1000.0) / 1000.0 < 0.02


def test_stats_merge_adds_counters_errors_and_checks() -> None:
    a, b = Stats(), Stats()
    a.add("x", 2)
    b.add("x", 3)
    b.error("RATE_LIMIT_EXCEEDED")
    a.check("exact", True)
    b.check("exact", False, "call 1: off by one")
    a.moment("t", 5.0)
    b.moment("t", 2.0)
    a.merge(b)
    assert a.get("x") == 5 and a.errors == {"RATE_LIMIT_EXCEEDED": 1}
    assert (a.checks["exact"].passed, a.checks["exact"].failed) == (1, 1)
    assert a.checks["exact"].samples == ["call 1: off by one"]
    assert (a.first["t"], a.last["t"]) == (2.0, 5.0)


def test_client_frames_are_masked_reversibly() -> None:
    payload = b'{"type":"ping","id":"1"}' * 10
    frame = client_frame(payload)
    assert frame[0] == 0x81 and frame[1] == 0x80 | 126
    key = frame[4:8]
    assert mask_payload(frame[8:], key) == payload


def test_metrics_text_is_parsed_with_labels() -> None:
    text = (
        "# HELP digis_actors Live session actors\n"
        'digis_actors{kind="call"} 3.0\n'
        "digis_flush_seconds_count 12.0\n"
    )
    assert parse_metrics(text) == {
        'digis_actors{kind="call"}': 3.0,
        "digis_flush_seconds_count": 12.0,
    }


def _summary() -> Summary:
    return Summary(
        scenario="stream",
        title="tiny",
        params={},
        window_seconds=2.0,
        clients=1,
        requests=1,
        requests_ok=1,
        deliveries=10,
        rates={"requests_per_s": 0.5, "deliveries_per_s": 5.0},
        latency_ms={},
        errors={},
        server={},
        client={"workers": 1.0, "cpu_seconds": 0.1},
        machine={},
        series={
            "t": [1.0, 2.0],
            "deliveries_per_s": [5.0, 5.0],
            "requests_per_s": [0.5, 0.5],
            "server_cpu_percent": [1.0, 1.0],
            "server_rss_mib": [80.0, 80.0],
            "delivery_p99_ms": [3.0, 4.0],
        },
    )


def test_plot_degrades_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    message = plot_series(_summary(), tmp_path / "x.png")
    assert "matplotlib is not installed" in message and not (tmp_path / "x.png").exists()


def test_plot_is_written_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the `plot` extra) is not installed")
    assert "written" in plot_series(_summary(), tmp_path / "x.png")
    assert (tmp_path / "x.png").stat().st_size > 0


async def test_slow_viewer_joins_with_a_bearer_header_then_never_reads(server: Any) -> None:
    """``stream --slow``'s viewers: a raw handshake authenticated by header, a join."""
    import asyncio

    from loadtest.slow import SlowViewer
    from tests.conftest import quick_user

    creator = await quick_user(server, "creator")
    fan = await quick_user(server)
    async with server.connect(creator.access_token) as c:
        session = (await c.request("stream.start", title="slow")).stream.session
        viewer = SlowViewer()
        await viewer.open(server.http_url, fan.access_token, session)
        try:
            actor = server.services.sessions.streams[session]
            async with asyncio.timeout(10):
                while actor.core.viewer_count != 1:
                    await asyncio.sleep(0.05)
        finally:
            viewer.close()
        await c.request("stream.end", session=session)
