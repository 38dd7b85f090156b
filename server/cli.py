"""The ``digis`` command: serve, migrate, ledger verify, seed, loadtest, config.

This module is the composition root of the command line; it is the one
place allowed to reach the loadtest package (a tool, not a server layer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from server import logs
from server.config import ConfigError, Settings, load, markdown_table

log = logging.getLogger("digis.cli")


def _say(message: str) -> None:
    print(f"digis: {message}", file=sys.stderr, flush=True)


def _install_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def _settings(args: argparse.Namespace) -> Settings:
    env = dict(os.environ)
    for flag, var in (
        ("host", "DIGIS_HOST"),
        ("port", "DIGIS_PORT"),
        ("data_dir", "DIGIS_DATA_DIR"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            env[var] = str(value)
    return load(env)


def _tune_gc() -> None:
    """Keep the cyclic garbage collector from pausing a busy server.

    Everything allocated at start-up is frozen out of collections, young
    collections run after 50,000 allocations instead of 700, and the older
    generations are collected five and a hundred times more rarely. With
    5,000 metered calls (10,000 sockets) the defaults cost a third of the
    server's CPU and delayed ticks by up to 0.8 s (p99 712 ms); with these
    settings p99 tick lateness was 20 ms (`digis loadtest calls --calls 5000`).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 1000)


def _listen_sockets(host: str, port: int) -> list[socket.socket]:
    """Bind the listening sockets (every address ``host`` resolves to) first.

    Done before anything starts: if the port is taken, by another ``digis
    serve`` say, this process must not settle that server's calls (they
    carry the same node id) nor stop the embedded services it uses.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _name, resolved in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            address = resolved
            if port == 0 and len(bound) > 1:  # one free port for every address
                address = (resolved[0], bound[0].getsockname()[1], *resolved[2:])
            sock.bind(address)
            sock.setblocking(False)
    except OSError:
        for sock in bound:
            sock.close()
        raise
    return bound


async def _serve(settings: Settings) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.backends import start_backends

    started = time.monotonic()
    try:
        sockets = _listen_sockets(settings.host, settings.port)
    except OSError as exc:
        _say(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
        return 1
    try:
        backends = await start_backends(settings, progress=_say)
        try:
            app = create_app(settings, dsn=backends.dsn, redis_url=backends.redis_url)
            runner = web.AppRunner(
                app,
                handle_signals=False,
                access_log=None,
                shutdown_timeout=settings.shutdown_timeout,
            )
            await runner.setup()
            try:
                for sock in sockets:
                    await web.SockSite(runner, sock, backlog=4096).start()
                _tune_gc()
                port = sockets[0].getsockname()[1]
                url = f"http://{settings.host}:{port}"
                elapsed = time.monotonic() - started
                log.info("listening", extra={"url": url, "startup_seconds": round(elapsed, 3)})
                _say(f"listening on {url} ({backends.describe()}; ready in {elapsed:.1f} s)")
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
                _say("shutting down")
            finally:
                await runner.cleanup()
        finally:
            await asyncio.to_thread(lambda: backends.stop(adopted=True))
    finally:
        for sock in sockets:
            sock.close()
    _say("stopped")
    return 0


@contextlib.asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[tuple[Any, list[str]]]:
    """A connection to the configured (or embedded) database, migrated first.

    Embedded services this command had to start are stopped afterwards; a
    running `digis serve`'s are left alone.
    """
    import asyncpg

    from server.backends import start_backends
    from storage.migrate import migrate

    backends = await start_backends(settings, progress=_say, with_redis=False)
    try:
        conn = await asyncpg.connect(backends.dsn)
        try:
            applied = await migrate(conn)
            yield conn, applied
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(backends.stop)


async def _migrate(settings: Settings) -> int:
    async with _database(settings) as (_conn, applied):
        pass
    if applied:
        for name in applied:
            _say(f"applied {name}")
    else:
        _say("database is up to date")
    return 0


async def _seed(settings: Settings, args: argparse.Namespace) -> int:
    from server.config import jwt_secret
    from server.seed import SeedPlan, seed, write

    plan = SeedPlan(
        fans=args.fans,
        creators=args.creators,
        tokens=args.tokens,
        video_rate=args.rate,
        voice_rate=args.rate,
        prefix=args.prefix,
        password=args.password,
        token_ttl=args.token_ttl,
    )
    started = time.monotonic()
    async with _database(settings) as (conn, _applied):
        document = await seed(
            conn,
            plan,
            jwt_secret=jwt_secret(settings),
            argon2_memory_kib=settings.argon2_memory_kib,
        )
    write(document, args.out)
    _say(
        f"seeded {plan.creators} creators and {plan.fans} fans ({plan.tokens} tokens each) "
        f"in {time.monotonic() - started:.1f} s -> {args.out}"
    )
    return 0


async def _ledger_verify(settings: Settings) -> int:
    from billing.verify import verify

    async with _database(settings) as (conn, _applied):
        report = await verify(conn)
    for problem in report.problems:
        print(problem)
    verdict = "consistent" if report.ok else f"{len(report.problems)} problem(s)"
    print(f"ledger: {report.accounts} accounts, {report.transfers} transfers: {verdict}")
    return 0 if report.ok else 1


def _services(settings: Settings, args: argparse.Namespace) -> int:
    """Start, stop or show the embedded PostgreSQL and Redis of a data directory."""
    import warnings

    from storage.embedded import EmbeddedPostgres, EmbeddedRedis

    which = {"postgres", "redis"}
    if args.postgres or args.redis:
        which = {name for name in which if getattr(args, name)}
    data = settings.data_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        postgres = EmbeddedPostgres(data)
        redis = EmbeddedRedis(data)
        for name in sorted(which):
            service = postgres if name == "postgres" else redis
            if args.action == "start":
                url = service.start()
                _say(f"{name} running: {url.split('@')[-1]}")
                if args.env:
                    print(f"{'DATABASE_URL' if name == 'postgres' else 'REDIS_URL'}={url}")
            elif args.action == "stop":
                service.stop()
                _say(f"{name} stopped")
            else:
                state = "running" if service.is_running() else "stopped"
                print(f"{name}: {state} (port {service.port}, {data})")
    return 0


def _run(coro_factory: object) -> int:
    loop_kind = _install_uvloop()
    log.debug("event loop", extra={"loop": loop_kind})
    result: int = asyncio.run(coro_factory)  # type: ignore[arg-type]
    return result


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data directory (default: DIGIS_DATA_DIR or ./.digis)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digis",
        description="Digis realtime session server. Configuration comes from environment "
        "variables (see `digis config`).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        help="run the server (embedded PostgreSQL/Redis unless DATABASE_URL/REDIS_URL are set)",
        description="Run the server until SIGTERM/SIGINT, then shut down gracefully.",
    )
    serve.add_argument("--host", help="listen address (default: DIGIS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: DIGIS_PORT or 8080)")
    _data_dir_option(serve)
    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations and exit",
        description="Apply pending SQL migrations (safe to run repeatedly).",
    )
    _data_dir_option(migrate)
    seed = sub.add_parser(
        "seed",
        help="create many users with tokens (load tests, demos)",
        description="Create creators and fans in bulk, grant fans tokens, and write their "
        "access tokens to a JSON file.",
    )
    seed.add_argument("--fans", type=int, default=100, help="fans to create (default 100)")
    seed.add_argument("--creators", type=int, default=10, help="creators (default 10)")
    seed.add_argument("--tokens", type=int, default=10_000, help="tokens per fan (default 10000)")
    seed.add_argument("--rate", type=int, default=60, help="creators' tokens/minute (default 60)")
    seed.add_argument("--prefix", default="", help="username prefix (default: random)")
    seed.add_argument("--password", default="loadtest-password", help="password for all")
    seed.add_argument("--token-ttl", type=int, default=3600, help="access token lifetime, s")
    seed.add_argument("--out", type=Path, default=Path("seed.json"), help="output file")
    _data_dir_option(seed)
    ledger_cmd = sub.add_parser("ledger", help="ledger tools", description="Ledger tools (verify).")
    ledger_sub = ledger_cmd.add_subparsers(dest="ledger_command", metavar="ACTION")
    verify_cmd = ledger_sub.add_parser(
        "verify",
        help="recompute every balance from the transfers and report mismatches",
        description="Exit 0 if the ledger is consistent, 1 with a list of problems otherwise.",
    )
    _data_dir_option(verify_cmd)
    services = sub.add_parser(
        "services",
        help="start, stop or show the embedded PostgreSQL and Redis",
        description="Manage the embedded services of a data directory (for example to stop "
        "the ones a crashed server left running).",
    )
    services.add_argument("action", choices=("start", "stop", "status"))
    services.add_argument("--postgres", action="store_true", help="only PostgreSQL")
    services.add_argument("--redis", action="store_true", help="only Redis")
    services.add_argument(
        "--env",
        action="store_true",
        help="with start: print DATABASE_URL=... and REDIS_URL=... for other processes",
    )
    _data_dir_option(services)
    loadtest = sub.add_parser(
        "loadtest",
        help="load tests and benchmarks (connect, stream, calls, tips, mixed, compare, chaos)",
        description="Run `digis loadtest --help` for the scenarios.",
        add_help=False,
    )
    loadtest.add_argument("rest", nargs=argparse.REMAINDER)
    config = sub.add_parser(
        "config", help="list configuration variables", description="List environment variables."
    )
    config.add_argument("--markdown", action="store_true", help="print as a Markdown table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["loadtest"]:
        # the loadtest has its own parser; hand it everything after the word
        from loadtest.cli import main as loadtest_main

        return loadtest_main(given[1:])
    parser = build_parser()
    args = parser.parse_args(given)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "config":
        if args.markdown:
            print(markdown_table())
        else:
            from server.config import VARIABLES

            for var in VARIABLES:
                print(f"{var.name}={var.default or ''}\n    {var.doc}")
        return 0
    try:
        settings = _settings(args)
    except ConfigError as exc:
        _say(f"configuration error: {exc}")
        return 2
    logs.setup(settings.log_level)
    try:
        if args.command == "serve":
            return _run(_serve(settings))
        if args.command == "migrate":
            return _run(_migrate(settings))
        if args.command == "services":
            return _services(settings, args)
        if args.command == "seed":
            return _run(_seed(settings, args))
        if args.command == "ledger":
            if args.ledger_command != "verify":
                parser.parse_args(["ledger", "--help"])
            return _run(_ledger_verify(settings))
    except ConfigError as exc:
        _say(f"configuration error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        log.debug("command failed", exc_info=True)
        _say(f"error: {exc}")
        return 1
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
