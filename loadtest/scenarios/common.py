"""Parent-side helpers shared by scenarios: creators going live, timed SDK requests.

The creators of a run's streams are SDK :class:`client.Client` sockets held
by the parent process for the whole run (one per stream, a handful at
most). They start the stream before the workers connect and end it in
cleanup, where the server's own ``stream.end`` totals are checked against
what the workers counted.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from client import Client, ConnectionLost, RequestError
from loadtest.harness import Harness
from loadtest.roster import SeededUser
from loadtest.stats import Stats
from protocol.base import ServerMessage


async def timed(client: Client, stats: Stats, type_name: str, **fields: Any) -> Any:
    """``client.request`` counted like the lean client counts (req/ok/rtt/errors).

    Returns the typed result, or None when the request failed (its error
    code, ``CONNECTION_LOST`` or ``TIMEOUT``, is counted in ``stats``).
    """
    stats.add(f"req:{type_name}")
    started = time.perf_counter()
    try:
        result = await client.request(type_name, **fields)
    except RequestError as exc:
        stats.error(exc.code)
        return None
    except ConnectionLost:
        stats.error("CONNECTION_LOST")
        return None
    except TimeoutError:
        stats.error("TIMEOUT")
        return None
    stats.observe(f"rtt:{type_name}", (time.perf_counter() - started) * 1000)
    stats.add(f"ok:{type_name}")
    return result


def _ignore(_event: ServerMessage) -> None:
    """Creators of streams ignore pushed events (viewers count them)."""


class LiveStreams:
    """The streams of one run: creator sockets in the parent, one stream each."""

    def __init__(self) -> None:
        self.clients: list[Client] = []
        self.sessions: list[str] = []
        self.urls: list[str] = []

    async def start(self, env: Harness, creators: list[SeededUser], title: str) -> list[str]:
        """Go live with each creator on target ``i % targets``; returns the sessions."""
        for i, creator in enumerate(creators):
            target = env.target(i)
            client = Client(target.ws_url, creator.token, reconnect=False, on_event=_ignore)
            await client.open()
            self.clients.append(client)
            started = await client.request("stream.start", title=f"{title} {i}")
            self.sessions.append(started.stream.session)
            self.urls.append(target.url)
        return self.sessions

    async def end(self, stats: Stats) -> None:
        """End every stream and check its totals against the accepted counts."""
        for k, (client, session) in enumerate(zip(self.clients, self.sessions, strict=True)):
            try:
                totals = await client.request("stream.end", session=session)
            except (RequestError, ConnectionLost, TimeoutError) as exc:
                stats.check("stream.end totals = accepted", False, f"stream {k}: {exc}")
                continue
            chats = stats.get(f"chat.accepted.s{k}")
            tips = stats.get(f"tip.accepted.s{k}")
            amount = stats.get(f"tip.amount.s{k}") or tips
            stats.check(
                "stream.end totals = accepted",
                totals.chat_messages == chats and totals.tips_total == amount,
                f"stream {k}: server counted {totals.chat_messages} lines / "
                f"{totals.tips_total} tipped, clients {chats:.0f} / {amount:.0f}",
            )
        await self.close()

    async def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(Exception):
                await client.close()
        self.clients = []
