"""``digis loadtest SCENARIO`` (also ``python -m loadtest SCENARIO``).

    digis loadtest connect --clients 5000 --workers 2
    digis loadtest stream --viewers 1000 --rate 100 --duration 30 --workers 2
    digis loadtest calls --calls 2000 --duration 30 --workers 2
    digis loadtest tips --fans 200 --rate 300
    digis loadtest mixed --duration 30 --workers 2
    digis loadtest compare --viewers 1000 --rates 50,100,200 --workers 2

Without ``--url`` a server is spawned (``digis serve`` on a temporary data
directory with embedded PostgreSQL and Redis) and seeded, and stopped at the
end; with ``--url`` (repeatable) and ``--seed-file`` running servers are
loaded. Every run is bounded in clients and time and targets loopback only.
It prints a progress line while running and a summary table at the end;
``--json FILE`` writes the summary, ``--plot FILE.png`` a chart (needs the
``plot`` extra).

:func:`main` returns 0 when every check passed, 1 when a check failed or the
run could not complete, 2 for a usage or setup error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from loadtest.harness import HarnessError, Options, open_harness
from loadtest.report import plot_series, render, write_json
from loadtest.roster import RosterError
from loadtest.runner import Scenario, run_scenario
from loadtest.spawn import SpawnError
from loadtest.workers import FleetError, run_loop

#: Scenario flags: (flag, type, default, help). Names become params keys.
SCENARIO_FLAGS: dict[str, list[tuple[str, type, Any, str]]] = {
    "connect": [
        ("--clients", int, 100, "authenticated sockets to open"),
        ("--concurrency", int, 50, "handshakes in flight per worker"),
        ("--hold", float, 2.0, "seconds to hold the idle sockets before measuring RSS"),
    ],
    "stream": [
        ("--viewers", int, 100, "viewers (all streams together; senders are among them)"),
        ("--rate", float, 20.0, "chat lines per second (all streams together)"),
        ("--streams", int, 1, "live streams (one creator each)"),
        ("--tip-rate", float, 0.0, "tips per second (all streams together)"),
        ("--duration", float, 10.0, "seconds of sending"),
        ("--text-bytes", int, 48, "chat line length"),
        ("--slow", int, 0, "extra viewers that stop reading (slow consumers to be dropped)"),
    ],
    "calls": [
        ("--calls", int, 10, "concurrent metered calls (one fan and one creator each)"),
        ("--duration", float, 10.0, "seconds each call lasts"),
        ("--price", int, 45, "tokens per minute the creators charge"),
        ("--concurrency", int, 50, "calls being set up at once per worker"),
    ],
    "tips": [
        ("--fans", int, 50, "fans in the stream, all tipping"),
        ("--rate", float, 100.0, "tips per second (all fans together)"),
        ("--amount", int, 1, "tokens per tip"),
        ("--duration", float, 10.0, "seconds of tipping"),
    ],
    "mixed": [
        ("--idle", int, 200, "idle fans (connected, authenticated, quiet)"),
        ("--streams", int, 2, "live streams"),
        ("--viewers", int, 50, "viewers per stream"),
        ("--chat-rate", float, 10.0, "chat lines per second per stream"),
        ("--tip-rate", float, 2.0, "tips per second per stream"),
        ("--calls", int, 5, "metered calls"),
        ("--price", int, 45, "tokens per minute the creators charge"),
        ("--duration", float, 20.0, "seconds of activity"),
    ],
    "compare": [
        ("--viewers", int, 1000, "viewers of the one stream / room"),
        ("--rates", str, "5,10,25,50,100,200", "publish rates to step through (lines/s)"),
        ("--duration", float, 5.0, "seconds of sending per step"),
        ("--servers", str, "digis,bare,sio", "servers to compare (digis, bare, sio)"),
        ("--text-bytes", int, 48, "chat line length"),
    ],
}


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("target and output")
    g.add_argument(
        "--url",
        action="append",
        default=[],
        help="server base URL http://127.0.0.1:PORT (repeat for several); default: spawn one",
    )
    g.add_argument("--seed-file", type=Path, help="`digis seed --out` file for --url targets")
    g.add_argument(
        "--server-pid",
        type=int,
        action="append",
        default=[],
        help="pid of a --url server, for RSS/CPU (repeatable)",
    )
    g.add_argument("--pg-dsn", help="PostgreSQL DSN for pg_stat_database figures (--url runs)")
    g.add_argument(
        "--pg-pid",
        type=int,
        action="append",
        default=[],
        help="postmaster pid, for PostgreSQL CPU (--url runs)",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="client worker processes (default 1; 2 on a 2-core box)",
    )
    g.add_argument(
        "--tokens", type=int, default=10_000, help="tokens per seeded fan (spawned runs)"
    )
    g.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for a spawned server, e.g. DIGIS_SEND_BUFFER_BYTES=65536",
    )
    g.add_argument("--json", type=Path, dest="json_path", help="write the summary as JSON")
    g.add_argument(
        "--plot", type=Path, dest="plot_path", help="write a PNG chart (needs matplotlib)"
    )
    g.add_argument("--quiet", action="store_true", help="no progress line")
    g.add_argument("--keep-data", action="store_true", help="keep the spawned server's data dir")
    return common


def _chaos_parser(sub: Any) -> None:
    chaos = sub.add_parser(
        "chaos",
        help="kill -9 / SIGTERM / PostgreSQL and Redis outages under money traffic, then audit",
        description="Crash the server at random moments under calls, tips, transfers, "
        "purchases (signed webhooks, duplicated and out of order) and payouts, restart it, "
        "and check every money invariant at the end. Exit 1 if any is violated.",
    )
    chaos.add_argument("--iterations", type=int, default=10, help="fault injections (default 10)")
    chaos.add_argument("--min-run", type=float, default=0.5, help="min seconds of traffic each")
    chaos.add_argument("--max-run", type=float, default=3.0, help="max seconds of traffic each")
    chaos.add_argument("--fans", type=int, default=24, help="fans (default 24)")
    chaos.add_argument("--creators", type=int, default=4, help="creators (default 4)")
    chaos.add_argument("--seed", type=int, help="random seed (repeat a run)")
    chaos.add_argument(
        "--faults",
        default="",
        help="fixed fault sequence, cycled: e.g. kill9,postgres,redis,sigterm (default: random)",
    )
    chaos.add_argument("--json", type=Path, dest="json_path", help="write the report as JSON")
    chaos.add_argument("--keep-data", action="store_true", help="keep the data directory")
    chaos.add_argument("--quiet", action="store_true", help="no progress lines")


async def _chaos(args: argparse.Namespace) -> int:
    from loadtest.chaos import FAULTS, ChaosConfig, run_chaos

    if not 1 <= args.iterations <= 10_000 or not 0 < args.min_run <= args.max_run <= 600:
        raise HarnessError("--iterations must be 1..10000 and 0 < --min-run <= --max-run <= 600")
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise HarnessError(f"unknown faults {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    report = await run_chaos(
        ChaosConfig(
            iterations=args.iterations,
            min_run=args.min_run,
            max_run=args.max_run,
            fans=args.fans,
            creators=args.creators,
            seed=args.seed,
            keep_data=args.keep_data,
            quiet=args.quiet,
            faults=faults,
        )
    )
    print(json.dumps(report, indent=2))
    if args.json_path is not None:
        args.json_path.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ok"] else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digis loadtest",
        description="Bounded load tests of a Digis server over loopback.",
    )
    sub = parser.add_subparsers(dest="scenario", metavar="SCENARIO")
    common = _common()
    helps = {
        "connect": "open N authenticated sockets as fast as possible",
        "stream": "creators live, N viewers, chat (and tips) at a rate",
        "calls": "N concurrent metered calls, exact billing check",
        "tips": "many fans tipping one live creator",
        "mixed": "idle fans, streams with chat and tips, and calls at once",
        "compare": "stream fan-out vs a bare aiohttp loop and python-socketio",
    }
    for name, flags in SCENARIO_FLAGS.items():
        p = sub.add_parser(name, parents=[common], help=helps[name], description=helps[name])
        for flag, kind, default, text in flags:
            p.add_argument(flag, type=kind, default=default, help=f"{text} (default {default})")
    _chaos_parser(sub)
    return parser


def options_from(args: argparse.Namespace) -> Options:
    if not 1 <= args.workers <= 64:
        raise HarnessError("--workers must be between 1 and 64")
    return Options(
        urls=list(args.url),
        seed_file=args.seed_file,
        server_pids=list(args.server_pid),
        pg_dsn=args.pg_dsn,
        pg_pids=list(args.pg_pid),
        workers=args.workers,
        json_path=args.json_path,
        plot_path=args.plot_path,
        quiet=args.quiet,
        keep_data=args.keep_data,
        tokens=args.tokens,
        rate=int(getattr(args, "price", 60)),
        server_env=_server_env(args.server_env),
    )


def _server_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.startswith(("DIGIS_", "STRIPE_", "AGORA_")):
            raise HarnessError(
                f"--server-env takes DIGIS_*/STRIPE_*/AGORA_* KEY=VALUE, got {pair!r}"
            )
        env[key] = value
    return env


#: Upper bounds that keep every run finite (a typo must not open a million sockets).
MAX_COUNT = 100_000
MAX_SECONDS = 3600.0


def params_from(args: argparse.Namespace) -> dict[str, Any]:
    """The scenario's own flags as a params dict; HarnessError if one is out of bounds."""
    params: dict[str, Any] = {}
    for flag, kind, _default, _help in SCENARIO_FLAGS[args.scenario]:
        name = flag.lstrip("-").replace("-", "_")
        value = getattr(args, name)
        if kind in (int, float) and value < 0:
            raise HarnessError(f"{flag} must not be negative")
        if name == "duration" and not 0 < value <= MAX_SECONDS:
            raise HarnessError(f"--duration must be in (0, {MAX_SECONDS:.0f}] seconds")
        if kind is int and value > MAX_COUNT:
            raise HarnessError(f"{flag} is capped at {MAX_COUNT}")
        params[name] = value
    return params


async def _run(scenario: Scenario, options: Options) -> int:
    async with open_harness(options, scenario.seed_request()) as env:
        summary = await run_scenario(scenario, env)
    print(render(summary), flush=True)
    if options.json_path is not None:
        write_json(options.json_path, summary.to_json())
    if options.plot_path is not None:
        print(plot_series(summary, options.plot_path), flush=True)
    return 0 if summary.ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``digis loadtest`` / ``python -m loadtest``; see module docstring."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.scenario is None:
        parser.print_help()
        return 2
    try:
        if args.scenario == "chaos":
            return run_loop(_chaos(args))
        options = options_from(args)
        params = params_from(args)
        if args.scenario == "compare":
            from loadtest.compare import run_compare

            return run_loop(run_compare(params, options))
        from loadtest.scenarios import SCENARIOS

        scenario = SCENARIOS[args.scenario](params, options)
        return run_loop(_run(scenario, options))
    except (HarnessError, RosterError, SpawnError) as exc:
        print(f"loadtest: error: {exc}", file=sys.stderr)
        return 2
    except FleetError as exc:
        print(f"loadtest: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
