"""All live sessions of this node, the invitations ringing, and who is busy."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from billing.settlement import settle_orphans
from server.sessions.actor import SessionActor
from server.sessions.call_actor import CallActor
from server.sessions.call_ends import CallEnds
from server.sessions.flusher import Flusher
from server.sessions.invites import InviteBook
from server.sessions.stream_actor import StreamActor

if TYPE_CHECKING:
    from server.services import Services

log = logging.getLogger("digis.sessions")

#: A session whose node has not checkpointed for this long is settled by others.
STALE_AFTER_SECONDS = 60.0
SETTLE_EVERY_SECONDS = 30.0


class SessionRegistry:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.calls: dict[str, CallActor] = {}
        self.streams: dict[str, StreamActor] = {}
        self.user_call: dict[int, str] = {}
        self.creator_stream: dict[int, str] = {}
        self.invites = InviteBook(services.hub, services.settings.call_invite_timeout)
        self.flusher = Flusher(self, services.settings.flush_interval)
        self.ends = CallEnds(services.pool)
        self.accepting: set[int] = set()
        #: Sessions whose row exists (or is being written) but whose actor is
        #: not registered yet: settlement must never touch them.
        self.starting: set[str] = set()

    # --- lookup -------------------------------------------------------------------------

    def get(self, session: str) -> CallActor | StreamActor | None:
        return self.calls.get(session) or self.streams.get(session)

    def busy(self, user_id: int) -> bool:
        """In a call, or a creator currently setting one up."""
        return user_id in self.user_call or user_id in self.accepting

    # --- membership -----------------------------------------------------------------------

    def add_call(self, actor: CallActor) -> None:
        self.calls[actor.session] = actor
        for user in actor.core.participants:
            self.user_call[user] = actor.session
        self.services.presence.link(*actor.core.participants)
        self.services.metrics.actors.labels("call").inc()

    def add_stream(self, actor: StreamActor) -> None:
        self.streams[actor.session] = actor
        self.creator_stream[actor.core.creator.id] = actor.session
        self.services.metrics.actors.labels("stream").inc()

    def remove(self, actor: SessionActor) -> None:
        if isinstance(actor, CallActor) and self.calls.pop(actor.session, None) is not None:
            self.services.presence.unlink(*actor.core.participants)
            for user in actor.core.participants:
                if self.user_call.get(user) == actor.session:
                    del self.user_call[user]
            self.services.metrics.actors.labels("call").dec()
        elif isinstance(actor, StreamActor) and self.streams.pop(actor.session, None) is not None:
            creator = actor.core.creator.id
            if self.creator_stream.get(creator) == actor.session:
                del self.creator_stream[creator]
            self.services.metrics.actors.labels("stream").dec()

    # --- background work ---------------------------------------------------------------------

    def start(self) -> None:
        self.services.spawn(self.flusher.run(), "flusher")
        self.services.spawn(self.ends.run(), "call-ends")
        self.services.spawn(self._settle_loop(), "settlement")

    async def settle_now(self, *, at_start: bool = False) -> int:
        """Settle sessions whose actor is gone (see ``billing.settlement``).

        At start-up this node's own leftovers are settled; other nodes' only
        when they are silent in PostgreSQL *and* absent from Redis's node
        heartbeats (while Redis is down, other nodes are left alone).
        """
        live_nodes = await self.services.presence.live_nodes()
        if live_nodes is None and not at_start:
            return 0
        live = set(self.calls) | set(self.streams) | self.starting
        settled = await settle_orphans(
            self.services.pool,
            self.services.ledger,
            node_id=self.services.node_id,
            stale_seconds=STALE_AFTER_SECONDS,
            live=live,
            include_own=at_start,
            live_nodes=live_nodes,
        )
        return len(settled)

    async def _settle_loop(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_EVERY_SECONDS)
            try:
                await self.settle_now()
            except Exception:
                log.warning("settling orphaned sessions failed", exc_info=True)

    async def shutdown(self, timeout: float) -> None:
        """End every live session (settling holds), then write a last flush."""
        self.invites.close_all()
        actors: list[SessionActor] = [*self.calls.values(), *self.streams.values()]
        for actor in actors:
            actor.tell(lambda a, now: a.core.fail("server_shutdown"))
        if actors:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(a.finished.wait() for a in actors)), timeout
                )
        with contextlib.suppress(Exception):
            await self.flusher.flush_once()
