"""The actor of one live stream: a :class:`StreamCore` in a :class:`SessionActor`."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from protocol import events as ev
from protocol import results as rs
from protocol.base import UserRef
from protocol.codes import ErrorCode
from server.errors import ApiError
from server.sessions.actor import SessionActor
from server.sessions.effects import Emit, Finish, PostHold, RequestHold, VoidHold
from server.sessions.stream_core import StreamCore
from storage import sessions as store
from storage.sessions import StreamCheckpoint

if TYPE_CHECKING:
    from server.connection import Connection

log = logging.getLogger("digis.stream")


class StreamActor(SessionActor):
    kind = "stream"
    core: StreamCore

    def media_role(self, user_id: int) -> str:
        return "publisher" if user_id == self.core.creator.id else "subscriber"

    def attach_creator(self, conn: Connection, now: float) -> rs.StreamStarted:
        self.subscribe(conn, self.core.creator.id)
        self.core.join(self.core.creator, conn.id, now)
        media, error = self.media_for(
            self.core.creator.id, "publisher", self.services.settings.media_token_ttl
        )
        return rs.StreamStarted(
            stream=self.core.info(), epoch=self.core.epoch, media=media, media_error=error
        )

    def join(
        self,
        conn: Connection,
        user: UserRef,
        last_seq: int | None,
        epoch: str | None,
        now: float,
    ) -> rs.StreamJoined:
        """Add a viewer (or the creator's other socket); replay missed events on resume."""
        self.core.join(user, conn.id, now)
        self.subscribe(conn, user.id)
        recovered, missed = self.replay(conn, last_seq, epoch)
        role = self.media_role(user.id)
        media, error = self.media_for(user.id, role, self.services.settings.media_token_ttl)
        return rs.StreamJoined(
            stream=self.core.info(),
            epoch=self.core.epoch,
            seq=self.core.seq.seq,
            recovered=recovered,
            chat=list(self.core.chat),
            top_tippers=self.core.top_tippers(),
            media=media,
            missed=missed,
            media_error=error,
        )

    def leave(self, conn: Connection, user_id: int, now: float) -> None:
        if self.subscribers.get(conn) != user_id:
            raise ApiError(ErrorCode.NOT_FOUND, "not watching this stream on this socket")
        self.socket_left(conn, now)

    def socket_left(self, conn: Connection, now: float) -> None:
        user_id = self.unsubscribe(conn)
        if user_id is not None and self.core.leave(user_id, conn.id, now):
            self.media_expiry.pop(user_id, None)

    def ledger_effect(self, effect: RequestHold | PostHold | VoidHold) -> None:
        raise AssertionError("streams do not hold tokens")

    # --- flushing and ending ------------------------------------------------------------

    def checkpoint(self) -> StreamCheckpoint:
        core = self.core
        return StreamCheckpoint(
            self.session,
            core.viewer_count,
            core.peak,
            len(core.unique),
            core.chat_count,
            core.tips_total,
            core.gifts_total,
        )

    def take_rows(
        self,
    ) -> tuple[list[tuple[str, int, float, bool]], list[tuple[str, int, int, str, float]]]:
        """Viewer join/leave marks and chat lines not yet written (cleared here)."""
        marks = [(self.session, m.user, m.at, m.joined) for m in self.core.marks]
        chat = [(self.session, *line) for line in self.core.unsaved_chat]
        self.core.marks = []
        self.core.unsaved_chat = []
        return marks, chat

    async def persist_end(self, finish: Finish) -> rs.StreamTotals:
        totals = self.core.totals(self.clock())
        marks, chat = self.take_rows()
        async with self.services.pool.acquire() as conn, conn.transaction():
            await store.flush_streams(conn, [], marks, chat)
            await store.end_stream(
                conn,
                session=self.session,
                totals=self.checkpoint(),
                reason=finish.reason,
                ended_at=time.time(),
            )
        return totals

    def announce_end(self, finish: Finish) -> None:
        event = ev.StreamEnded(
            session=self.session,
            reason=finish.reason,  # type: ignore[arg-type]
            totals=self.result,
        )
        event.seq = self.core.seq.next()
        event.epoch = self.core.epoch
        self.deliver(Emit(event))
