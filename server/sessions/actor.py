"""The asyncio shell around a session core: one task, one mailbox, no locks.

Everything that touches a session's state runs inside its task, in mailbox
order: ``await actor.ask(fn)`` queues ``fn(actor, now)`` and returns its
result (or raises its ApiError). The task sleeps until the next message or
the core's next deadline, whichever comes first, then performs the effects
the core produced:

* events are wrapped once in :class:`Outgoing` (encoded at most once per wire
  encoding) and written to each subscriber's transport; recorded events also
  go into a bounded buffer for recovery after reconnects;
* ledger work runs in tasks whose results come back through the mailbox;
  the actor never awaits a socket and never waits for a slow one.

An exception in the core is logged and the session is ended cleanly (holds
settled, participants told); the server keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from protocol import events as ev
from protocol import results as rs
from protocol.codes import ErrorCode
from server.agora.issuer import MediaUnavailable
from server.errors import ApiError
from server.outbound import Outgoing
from server.sessions.effects import (
    Effect,
    Emit,
    Finish,
    PostHold,
    RenewMedia,
    RequestHold,
    VoidHold,
)

if TYPE_CHECKING:
    from server.connection import Connection
    from server.services import Services

log = logging.getLogger("digis.actor")

R = TypeVar("R")
RECOVERY_BUFFER = 512
MAILBOX_SIZE = 20_000
MEDIA_SWEEP_EVERY = 30.0
MEDIA_RENEW_BEFORE = 120.0
MEDIA_UNAVAILABLE = "media tokens unavailable: AGORA_APP_ID and AGORA_APP_CERTIFICATE are not set"

Command = tuple[Callable[[Any, float], Any], asyncio.Future[Any] | None]


class SessionActor:
    """Base shell; :class:`CallActor` and :class:`StreamActor` add their kind."""

    kind = "session"

    def __init__(
        self, services: Services, core: Any, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.services = services
        self.core = core
        self.session: str = core.session
        self.clock = clock
        self.subscribers: dict[Connection, int] = {}
        self.by_user: dict[int, set[Connection]] = {}
        self.buffer: deque[tuple[int, Outgoing]] = deque(maxlen=RECOVERY_BUFFER)
        self.mailbox: asyncio.Queue[Command] = asyncio.Queue(MAILBOX_SIZE)
        self.media_expiry: dict[int, float] = {}
        self.finished = asyncio.Event()
        self.closing = False
        self.dirty = True
        self.result: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_sweep = clock() + MEDIA_SWEEP_EVERY
        self._task: asyncio.Task[None] | None = None

    # --- mailbox ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"{self.kind}-{self.session}"
        )

    async def ask(self, fn: Callable[[Any, float], R], timeout: float = 15.0) -> R:
        """Run ``fn(actor, now)`` inside the actor and return its result."""
        if self.closing:
            raise ApiError(ErrorCode.INVALID_STATE, "the session has ended")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self.mailbox.put_nowait((fn, future))
        except asyncio.QueueFull:
            raise ApiError(
                ErrorCode.RATE_LIMIT_EXCEEDED, "the session is busy; retry", retry_after_ms=200
            ) from None
        async with asyncio.timeout(timeout):
            return await future

    def tell(self, fn: Callable[[Any, float], Any]) -> None:
        """Queue ``fn(actor, now)`` without waiting (internal results, socket teardown)."""
        with contextlib.suppress(asyncio.QueueFull):
            self.mailbox.put_nowait((fn, None))

    async def _run(self) -> None:
        try:
            while True:
                deadline = min(self.core.next_deadline(), self._next_sweep)
                item: Command | None = None
                if not self.mailbox.empty():
                    item = self.mailbox.get_nowait()
                else:
                    delay = deadline - self.clock()
                    if delay > 0:
                        try:
                            async with asyncio.timeout(delay):
                                item = await self.mailbox.get()
                        except TimeoutError:
                            item = None
                now = self.clock()
                if item is not None:
                    self._execute(item, now)
                self.core.on_time(now)
                if now >= self._next_sweep:
                    self._next_sweep = now + MEDIA_SWEEP_EVERY
                    self.sweep_media()
                finish = self.apply(self.core.take_effects())
                if finish is not None:
                    await self._finalize(finish)
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("session actor crashed", extra={"session": self.session})
            await self._crash()

    def _execute(self, item: Command, now: float) -> None:
        fn, future = item
        try:
            value = fn(self, now)
        except ApiError as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            return
        except Exception as exc:
            if future is not None and not future.done():
                future.set_exception(exc)
            raise
        if future is not None and not future.done():
            future.set_result(value)

    async def _crash(self) -> None:
        """End the session after an unexpected error, settling what can be settled."""
        try:
            if not self.core.ended:
                self.core.fail("server_error")
            finish = self.apply(self.core.take_effects())
            await self._finalize(finish or Finish("server_error"))
        except Exception:
            log.exception("session could not be ended cleanly", extra={"session": self.session})
            self.closing = True
            self.services.sessions.remove(self)
            self.finished.set()

    # --- delivery --------------------------------------------------------------------

    def apply(self, effects: list[Effect]) -> Finish | None:
        finish: Finish | None = None
        for effect in effects:
            if isinstance(effect, Emit):
                self.deliver(effect)
            elif isinstance(effect, Finish):
                finish = effect
            elif isinstance(effect, RenewMedia):
                self.renew_media(effect.user, effect.expires_in)
            elif isinstance(effect, RequestHold | PostHold | VoidHold):
                self.ledger_effect(effect)
        if effects:
            self.dirty = True
        return finish

    def deliver(self, effect: Emit) -> None:
        out = Outgoing(effect.event)
        if effect.record:
            self.buffer.append((effect.event.seq, out))
        if effect.to is None:
            targets: Any = list(self.subscribers)
        else:
            targets = [c for user in effect.to for c in self.by_user.get(user, ())]
        sent = 0
        for conn in targets:
            if conn.send_outgoing(out):
                sent += 1
        if sent:
            self.services.metrics.messages_out.labels(out.type).inc(sent)

    def subscribe(self, conn: Connection, user_id: int) -> None:
        if conn in self.subscribers:
            return
        self.subscribers[conn] = user_id
        self.by_user.setdefault(user_id, set()).add(conn)
        conn.add_leave_hook(self.session, self._socket_gone)

    def unsubscribe(self, conn: Connection) -> int | None:
        user_id = self.subscribers.pop(conn, None)
        conn.remove_leave_hook(self.session)
        if user_id is not None:
            sockets = self.by_user.get(user_id)
            if sockets is not None:
                sockets.discard(conn)
                if not sockets:
                    del self.by_user[user_id]
        return user_id

    def _socket_gone(self, conn: Connection) -> None:
        self.tell(lambda actor, now: actor.socket_left(conn, now))

    def socket_left(self, conn: Connection, now: float) -> None:
        """A subscriber's socket closed (or it left); the kind decides what that means."""
        raise NotImplementedError

    def replay(self, conn: Connection, last_seq: int | None, epoch: str | None) -> tuple[bool, int]:
        """Send recorded events after ``last_seq`` if the buffer still has them all."""
        if last_seq is None:
            return False, 0
        current = self.core.seq.seq
        if epoch != self.core.epoch or last_seq > current:
            return False, 0
        if last_seq == current:
            return True, 0
        if not self.buffer or self.buffer[0][0] > last_seq + 1:
            return False, 0
        missed = [out for seq, out in self.buffer if seq > last_seq]
        for out in missed:
            conn.send_outgoing(out)
        return True, len(missed)

    # --- media -----------------------------------------------------------------------

    def media_for(
        self, user_id: int, role: str, expires_in: int
    ) -> tuple[list[rs.MediaToken], str]:
        media = self.services.media
        if not media.enabled:
            return [], MEDIA_UNAVAILABLE
        try:
            rtc, rtc_exp = media.rtc(self.session, user_id, role, expires_in)  # type: ignore[arg-type]
            rtm, rtm_exp = media.rtm(str(user_id), expires_in)
        except MediaUnavailable:
            return [], MEDIA_UNAVAILABLE
        self.media_expiry[user_id] = rtc_exp
        common = {"app_id": media.app_id, "channel": self.session, "uid": user_id}
        return [
            rs.MediaToken(kind="rtc", token=rtc, role=role, expires_at=rtc_exp, **common),  # type: ignore[arg-type]
            rs.MediaToken(kind="rtm", token=rtm, role=role, expires_at=rtm_exp, **common),  # type: ignore[arg-type]
        ], ""

    def media_role(self, user_id: int) -> str:
        raise NotImplementedError

    def media_ttl(self, user_id: int) -> int:
        return self.services.settings.media_token_ttl

    def renew_media(self, user_id: int, expires_in: int) -> None:
        if user_id not in self.by_user or not self.services.media.enabled:
            return
        tokens, _ = self.media_for(user_id, self.media_role(user_id), expires_in)
        for token in tokens:
            self.deliver(
                Emit(ev.MediaTokenRenewed(session=self.session, media=token), (user_id,), False)
            )

    def sweep_media(self) -> None:
        """Renew tokens about to expire for members still present."""
        if not self.services.media.enabled:
            return
        horizon = time.time() + MEDIA_RENEW_BEFORE
        for user_id, expires in list(self.media_expiry.items()):
            if expires <= horizon and user_id in self.by_user:
                self.renew_media(user_id, self.media_ttl(user_id))

    # --- ledger -----------------------------------------------------------------------

    def ledger_effect(self, effect: RequestHold | PostHold | VoidHold) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- ending -----------------------------------------------------------------------

    async def _finalize(self, finish: Finish) -> None:
        """Settle ledger work, persist, tell everyone, release subscribers."""
        self.closing = True
        while self._tasks or not self.mailbox.empty():
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            while not self.mailbox.empty():
                fn, future = self.mailbox.get_nowait()
                if future is not None:
                    if not future.done():
                        future.set_exception(
                            ApiError(ErrorCode.INVALID_STATE, "the session has ended")
                        )
                    continue
                with contextlib.suppress(ApiError):
                    fn(self, self.clock())
                self.apply([e for e in self.core.take_effects() if not isinstance(e, Finish)])
        try:
            self.result = await self.persist_end(finish)
        except Exception:
            log.exception("could not persist the end of a session", extra={"session": self.session})
        self.announce_end(finish)
        for conn in list(self.subscribers):
            self.unsubscribe(conn)
        self.services.sessions.remove(self)
        self.finished.set()

    async def persist_end(self, finish: Finish) -> Any:
        raise NotImplementedError

    def announce_end(self, finish: Finish) -> None:
        raise NotImplementedError

    async def wait_finished(self, timeout: float = 15.0) -> Any:
        async with asyncio.timeout(timeout):
            await self.finished.wait()
        return self.result
