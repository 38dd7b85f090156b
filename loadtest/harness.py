"""The servers a run targets and the users it may use: spawned, or given.

``open_harness`` yields a :class:`Harness` either way:

* **spawn** (no ``--url``): ``digis serve`` on a free loopback port with a
  temporary ``DIGIS_DATA_DIR`` (embedded PostgreSQL and Redis), then
  ``digis seed`` with as many users as the scenario needs; RSS/CPU of the
  server pid, CPU of the embedded PostgreSQL, ``/metrics`` and
  ``pg_stat_database`` are all known. Everything is stopped and the data
  directory removed on exit (unless ``--keep-data``).
* **attach** (``--url`` one or more times, plus ``--seed-file``): running
  servers; RSS/CPU only for ``--server-pid``, PostgreSQL figures only with
  ``--pg-dsn`` / ``--pg-pid``. Clients are spread round-robin over the URLs.

Only loopback targets are accepted: this tool must never load a remote host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from loadtest.probe import Probe
from loadtest.roster import Roster, load_roster
from loadtest.spawn import (
    SeedRequest,
    ServerProcess,
    digis_server,
    loadtest_env,
    postgres_dsn,
    postmaster_pid,
    run_ledger_verify,
    run_seed,
    stop_services,
)


class HarnessError(Exception):
    """The targets or the seed cannot be used (message says why)."""


@dataclass(frozen=True)
class Target:
    """One server: its ``http://host:port`` base URL and, if known, its pid."""

    url: str
    pid: int | None = None

    @property
    def ws_url(self) -> str:
        return "ws://" + self.url.split("://", 1)[1].rstrip("/") + "/ws"


@dataclass
class Options:
    """Options shared by every scenario (see ``digis loadtest --help``)."""

    urls: list[str] = field(default_factory=list)
    seed_file: Path | None = None
    server_pids: list[int] = field(default_factory=list)
    pg_dsn: str | None = None
    pg_pids: list[int] = field(default_factory=list)
    workers: int = 1
    json_path: Path | None = None
    plot_path: Path | None = None
    quiet: bool = False
    keep_data: bool = False
    tokens: int = 10_000
    rate: int = 60
    #: Extra environment for a spawned server (``--server-env KEY=VALUE``).
    server_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Harness:
    options: Options
    targets: list[Target]
    roster: Roster
    probe: Probe
    spawned: bool = False
    #: Environment of the spawned server (for ``digis`` subcommands on its data).
    env: dict[str, str] = field(default_factory=dict)

    async def verify_ledger(self) -> tuple[bool, str] | None:
        """``digis ledger verify`` on a spawned server's database; None when attached."""
        if not self.spawned:
            return None
        return await asyncio.to_thread(run_ledger_verify, self.env)

    def target(self, i: int) -> Target:
        """Round-robin choice of a target for the ``i``-th client or session."""
        return self.targets[i % len(self.targets)]


def require_loopback(url: str) -> str:
    """``url`` without a trailing slash; HarnessError unless it is http(s)/ws on loopback."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme not in ("http", "ws") or not loopback or parts.port is None:
        raise HarnessError(f"--url must be http://127.0.0.1:PORT (loopback only), got {url!r}")
    return f"http://{host}:{parts.port}"


@contextlib.asynccontextmanager
async def open_harness(options: Options, needs: SeedRequest) -> AsyncIterator[Harness]:
    """Spawn or attach (see module docstring); cleans up what it started."""
    if options.urls:
        async with _attach(options) as harness:
            yield harness
    else:
        async with _spawn(options, needs) as harness:
            yield harness


@contextlib.asynccontextmanager
async def _attach(options: Options) -> AsyncIterator[Harness]:
    if options.seed_file is None:
        raise HarnessError("--url needs --seed-file (users created with `digis seed --out FILE`)")
    urls = list(dict.fromkeys(require_loopback(u) for u in options.urls))
    pids: list[int | None] = [*options.server_pids]
    targets = [Target(url, pids[i] if i < len(pids) else None) for i, url in enumerate(urls)]
    probe = Probe(
        [p for p in options.server_pids],
        metrics_urls=urls,
        backend_pids=options.pg_pids,
        pg_dsn=options.pg_dsn,
    )
    await probe.start()
    try:
        yield Harness(options, targets, load_roster(options.seed_file), probe)
    finally:
        await probe.close()


@contextlib.asynccontextmanager
async def _spawn(options: Options, needs: SeedRequest) -> AsyncIterator[Harness]:
    data_dir = Path(tempfile.mkdtemp(prefix="digis-loadtest-"))
    env = loadtest_env(data_dir, **options.server_env)
    server = digis_server(data_dir, env)
    probe: Probe | None = None
    try:
        url = await asyncio.to_thread(server.start)
        if not options.quiet:
            print(f"loadtest: spawned digis serve (pid {server.pid}) at {url}", file=sys.stderr)
        seed_file = data_dir / "seed.json"
        await asyncio.to_thread(run_seed, needs, seed_file, env)
        postmaster = postmaster_pid(data_dir)
        probe = Probe(
            [server.pid],
            metrics_urls=[url],
            backend_pids=[postmaster] if postmaster else [],
            pg_dsn=postgres_dsn(data_dir),
        )
        await probe.start()
        yield Harness(
            options,
            [Target(url, server.pid)],
            load_roster(seed_file),
            probe,
            spawned=True,
            env=env,
        )
    finally:
        if probe is not None:
            await probe.close()
        await asyncio.to_thread(_stop, server)
        # A server that had to be killed could not stop its embedded services.
        await asyncio.to_thread(stop_services, env)
        if not options.keep_data:
            shutil.rmtree(data_dir, ignore_errors=True)


def _stop(server: ServerProcess) -> None:
    status = server.stop()
    if status not in (0, None):
        tail = "".join(list(server.lines)[-5:])
        print(f"loadtest: digis serve exited with status {status}\n{tail}", flush=True)
