"""Run an aiohttp peer app on loopback until SIGTERM (shared by the peers).

Contract: :func:`run_app` listens on loopback ``127.0.0.1:port`` (port 0 picks one),
prints ``peer: listening on http://HOST:PORT`` on stderr once accepting,
and returns 0 after SIGTERM/SIGINT. The event loop is uvloop when installed,
as it is for ``digis serve``, so loop speed is not what a comparison measures.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from loadtest.workers import run_loop


def parse_args(prog: str, argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Fan-out peer for loadtest compare.")
    parser.add_argument("--port", type=int, default=0, help="listen port (0 = any free port)")
    return parser.parse_args(argv)


async def _serve(app: web.Application, host: str, port: int) -> int:
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        addresses = runner.addresses
        bound = int(addresses[0][1]) if addresses else port
        print(f"peer: listening on http://{host}:{bound}", file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


LOOPBACK = "127.0.0.1"


def run_app(app: web.Application, port: int, host: str = LOOPBACK) -> int:
    """Serve ``app`` until SIGTERM; see the module docstring."""
    return run_loop(_serve(app, host, port))
