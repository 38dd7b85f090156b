"""The actor of one metered call: a :class:`CallCore` in a :class:`SessionActor`."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from protocol import events as ev
from protocol import results as rs
from protocol.base import UserRef
from protocol.codes import ErrorCode
from server.errors import ApiError
from server.sessions.actor import SessionActor
from server.sessions.call_core import CallCore
from server.sessions.effects import Emit, Finish, PostHold, RequestHold, VoidHold
from storage.db import UNAVAILABLE_ERRORS
from storage.sessions import CallCheckpoint

if TYPE_CHECKING:
    from server.connection import Connection
    from server.services import Services

log = logging.getLogger("digis.call")
#: How long the actor tries to write a call's end before leaving it to the flusher.
END_WRITE_TIMEOUT = 5.0
_END_RETRYABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, TimeoutError)


class CallActor(SessionActor):
    kind = "call"
    core: CallCore

    def __init__(self, services: Services, core: CallCore, started_wall: float) -> None:
        super().__init__(services, core)
        self.started_wall = started_wall
        self.ended_wall: float | None = None
        self.chat_ids = 0
        #: What the flusher last wrote, and when (monotonic).
        self.flushed: CallCheckpoint | None = None
        self.flushed_at = 0.0

    # --- membership -------------------------------------------------------------------

    def media_role(self, user_id: int) -> str:
        return "publisher"

    def media_ttl(self, user_id: int) -> int:
        if user_id == self.core.fan.id and self.core.rate > 0:
            return min(self.services.settings.media_token_ttl, self.core.media_window())
        return self.services.settings.media_token_ttl

    def attach(self, conn: Connection, user_id: int, now: float) -> None:
        self.subscribe(conn, user_id)
        self.core.join(user_id, conn.id, now)

    def socket_left(self, conn: Connection, now: float) -> None:
        user_id = self.unsubscribe(conn)
        if user_id is not None:
            self.core.leave(user_id, conn.id, now)

    def joined(self, user_id: int) -> rs.CallJoined:
        media, error = self.media_for(user_id, "publisher", self.media_ttl(user_id))
        return rs.CallJoined(
            session=self.session,
            epoch=self.core.epoch,
            kind=self.core.kind,  # type: ignore[arg-type]
            fan=self.core.fan,
            creator=self.core.creator,
            rate_per_minute=self.core.rate,
            media=media,
            media_error=error,
        )

    def resume(
        self, conn: Connection, user_id: int, last_seq: int, epoch: str, now: float
    ) -> rs.SessionResumed:
        if not self.core.is_member(user_id):
            raise ApiError(ErrorCode.NOT_FOUND, "session not found")
        self.subscribe(conn, user_id)
        recovered, missed = self.replay(conn, last_seq, epoch)
        self.core.join(user_id, conn.id, now)
        return rs.SessionResumed(
            session=self.session,
            kind="call",
            epoch=self.core.epoch,
            seq=self.core.seq.seq,
            recovered=recovered,
            missed=missed,
        )

    def chat(self, user: UserRef, text: str) -> rs.ChatAccepted:
        if not self.core.is_member(user.id):
            raise ApiError(ErrorCode.NOT_FOUND, "session not found")
        self.chat_ids += 1
        seq = self.core.chat(user, text, time.time(), self.chat_ids)
        return rs.ChatAccepted(id=self.chat_ids, seq=seq)

    # --- ledger -----------------------------------------------------------------------

    def ledger_effect(self, effect: RequestHold | PostHold | VoidHold) -> None:
        ledger = self.services.ledger
        core = self.core
        if isinstance(effect, RequestHold):

            async def hold() -> None:
                result = await ledger.hold(
                    fan=core.fan.id, amount=effect.amount, key=effect.key, reference=self.session
                )
                self.tell(
                    lambda actor, now: actor.core.on_hold_result(
                        effect.number, result.status, result.amount, result.debit_spendable, now
                    )
                )

            self.spawn(hold())
        elif isinstance(effect, PostHold):
            self.spawn(
                ledger.post_hold(
                    fan=core.fan.id,
                    creator=core.creator.id,
                    hold_key=effect.hold_key,
                    amount=effect.amount,
                    fee=effect.fee,
                    key=effect.key,
                    reference=self.session,
                )
            )
        else:
            self.spawn(ledger.void_hold(fan=core.fan.id, hold_key=effect.hold_key, key=effect.key))

    # --- flushing and ending ------------------------------------------------------------

    def checkpoint(self) -> CallCheckpoint:
        totals = self.core.totals()
        return CallCheckpoint(
            self.session, totals.seconds, totals.charged, totals.fee, totals.earned
        )

    async def persist_end(self, finish: Finish) -> rs.CallTotals:
        """Write the final totals (the ledger work is already done).

        The row is written with other calls ending at the same moment
        (``call_ends.py``). If PostgreSQL is away it is handed to the
        flusher, which writes it with its next successful batch; the totals
        are the meter's either way.
        """
        self.ended_wall = time.time()
        checkpoint = self.checkpoint()
        stored: str | None = None
        try:
            async with asyncio.timeout(END_WRITE_TIMEOUT):
                stored = await self.services.sessions.ends.end(
                    checkpoint, finish.reason, self.ended_wall
                )
        except _END_RETRYABLE:
            log.warning("call end deferred to the flusher", extra={"session": self.session})
            self.services.sessions.flusher.pending_ends[self.session] = (
                checkpoint,
                finish.reason,
                self.ended_wall,
            )
        return rs.CallTotals(
            session=self.session,
            kind=self.core.kind,  # type: ignore[arg-type]
            fan=self.core.fan,
            creator=self.core.creator,
            started_at=self.started_wall,
            ended_at=self.ended_wall,
            duration_seconds=checkpoint.seconds,
            tokens_charged=checkpoint.charged,
            platform_fee=checkpoint.fee,
            creator_earned=checkpoint.earned,
            end_reason=stored or finish.reason,
        )

    def announce_end(self, finish: Finish) -> None:
        totals: Any = self.result
        event = ev.CallEnded(
            session=self.session,
            reason=finish.reason,  # type: ignore[arg-type]
            ended_by=finish.ended_by,
            totals=totals,
        )
        event.seq = self.core.seq.next()
        event.epoch = self.core.epoch
        self.deliver(Emit(event))
