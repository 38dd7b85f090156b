"""The ``digis`` command: serve, migrate, ledger verify, seed, loadtest, config.

This module is the composition root of the command line; it is the one
place allowed to reach the loadtest package (a tool, not a server layer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence

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


async def _serve(settings: Settings) -> int:
    from aiohttp import web

    from server.app import create_app
    from server.backends import start_backends

    started = time.monotonic()
    backends = await start_backends(settings, progress=_say)
    try:
        app = create_app(settings, dsn=backends.dsn, redis_url=backends.redis_url)
        runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=settings.shutdown_timeout
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
            try:
                await site.start()
            except OSError as exc:
                _say(f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}")
                return 1
            sockets = site._server.sockets if site._server is not None else ()  # type: ignore[attr-defined]
            port = sockets[0].getsockname()[1] if sockets else settings.port
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
        await asyncio.to_thread(backends.stop)
    _say("stopped")
    return 0


async def _migrate(settings: Settings) -> int:
    import asyncpg

    from server.backends import start_backends
    from storage.migrate import migrate

    backends = await start_backends(settings, progress=_say)
    try:
        conn = await asyncpg.connect(backends.dsn)
        try:
            applied = await migrate(conn)
        finally:
            await conn.close()
    finally:
        await asyncio.to_thread(backends.stop)
    if applied:
        for name in applied:
            _say(f"applied {name}")
    else:
        _say("database is up to date")
    return 0


def _run(coro_factory: object) -> int:
    loop_kind = _install_uvloop()
    log.debug("event loop", extra={"loop": loop_kind})
    result: int = asyncio.run(coro_factory)  # type: ignore[arg-type]
    return result


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
    serve.add_argument("--data-dir", help="data directory (default: DIGIS_DATA_DIR or ./.digis)")
    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations and exit",
        description="Apply pending SQL migrations (safe to run repeatedly).",
    )
    migrate.add_argument("--data-dir", help="data directory (default: DIGIS_DATA_DIR or ./.digis)")
    config = sub.add_parser(
        "config", help="list configuration variables", description="List environment variables."
    )
    config.add_argument("--markdown", action="store_true", help="print as a Markdown table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except ConfigError as exc:
        _say(f"configuration error: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(main())
