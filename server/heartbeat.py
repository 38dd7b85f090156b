"""One task keeps every socket honest: ping the quiet ones, drop the dead ones.

aiohttp's own heartbeat arms two timers and spawns a task per socket per
ping; with thousands of sockets opened together those pings all fire at
once. Here a single sweep runs ``SWEEPS_PER_INTERVAL`` times per
``DIGIS_HEARTBEAT`` interval: a socket that sent nothing for an interval gets
a ping frame (``Connection.send_control``), and one silent for
1.5 intervals (no pong either) is dropped. Its client sees an abnormal
closure (1006) if it ever notices; a live client just reconnects. The same
sweep warns sockets whose access token is about to expire and closes those
whose token has (``Connection.check_expiry``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from protocol.codes import CloseCode
from server.hub import Hub
from server.metrics import Metrics

log = logging.getLogger("digis.heartbeat")

SWEEPS_PER_INTERVAL = 10
_PING = 0x9


class Heartbeat:
    def __init__(self, hub: Hub, interval: float, metrics: Metrics) -> None:
        self.hub = hub
        self.interval = interval
        self.metrics = metrics

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval / SWEEPS_PER_INTERVAL)
            try:
                self.sweep(loop.time())
            except Exception:  # the heartbeat must never die
                log.exception("heartbeat sweep failed")

    def sweep(self, now: float) -> None:
        quiet = self.interval
        dead = self.interval * 1.5
        wall = time.time()
        for conn in self.hub.all_connections():
            conn.check_expiry(wall)
            silent = now - conn.last_seen
            if silent >= dead:
                if not conn.transport.is_closing():
                    self.metrics.closes.labels(str(int(CloseCode.ABNORMAL))).inc()
                    log.info("dead peer dropped", extra={"conn": conn.id})
                    conn.closed = True
                    conn.transport.abort()
            elif silent >= quiet and now - conn.last_ping >= quiet:
                conn.last_ping = now
                conn.send_control(_PING)
