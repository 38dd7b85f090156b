"""Batched writes of live-session state: one transaction per flush interval.

Every ``DIGIS_FLUSH_INTERVAL`` the flusher takes a snapshot of every call's
meter (seconds, tokens charged) and every stream's counters, new viewer rows
and chat lines, and writes all of them in ONE transaction with a handful of
set-based statements. The number of transactions per second is therefore
independent of the number of live sessions. A failed flush (PostgreSQL down)
loses nothing: meters are cumulative and are simply written next time, and
unsaved rows are kept for the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import asyncpg

from storage import sessions as store
from storage.db import UNAVAILABLE_ERRORS
from storage.sessions import CallCheckpoint

if TYPE_CHECKING:
    from server.sessions.registry import SessionRegistry

log = logging.getLogger("digis.flusher")
#: Even an unchanged (paused) call is checkpointed this often, as a liveness heartbeat.
HEARTBEAT_EVERY = 10.0
_RETRYABLE: tuple[type[BaseException], ...] = (*UNAVAILABLE_ERRORS, TimeoutError)


class Flusher:
    def __init__(self, registry: SessionRegistry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self.flushes = 0
        self.failures = 0
        self.rows_written = 0
        #: Call ends the actor could not write itself (database away): retried here.
        self.pending_ends: dict[str, tuple[CallCheckpoint, str, float]] = {}
        self._marks: list[tuple[str, int, float, bool]] = []
        self._chat: list[tuple[str, int, int, str, float]] = []

    async def run(self) -> None:
        next_at = time.monotonic() + self.interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            if next_at < time.monotonic():
                next_at = time.monotonic() + self.interval
            try:
                await self.flush_once()
            except Exception:
                log.exception("flush failed unexpectedly")

    async def flush_once(self) -> bool:
        """Write one batch; False if the database refused it (kept for the next try)."""
        registry = self.registry
        services = registry.services
        now = time.monotonic()
        calls = []
        written = []
        for n, actor in enumerate(list(registry.calls.values()), 1):
            if n % 500 == 0:
                await asyncio.sleep(0)  # thousands of calls: do not stall the loop
            checkpoint = actor.checkpoint()
            stale = now - actor.flushed_at >= HEARTBEAT_EVERY
            if checkpoint != actor.flushed or stale:
                calls.append(checkpoint)
                written.append(actor)
        streams = []
        for stream in list(registry.streams.values()):
            if stream.dirty:
                stream.dirty = False
                streams.append(stream.checkpoint())
                marks, chat = stream.take_rows()
                self._marks.extend(marks)
                self._chat.extend(chat)
        ends = list(self.pending_ends.values())
        if not calls and not streams and not self._marks and not self._chat and not ends:
            return True
        started = time.perf_counter()
        marks, chat = self._marks, self._chat
        try:
            async with services.pool.acquire() as conn, conn.transaction():
                await store.checkpoint_calls(conn, calls)
                await store.end_calls(conn, ends)
                await store.flush_streams(conn, streams, marks, chat)
        except _RETRYABLE as exc:
            self.failures += 1
            for stream in registry.streams.values():
                stream.dirty = True
            log.warning("flush failed; will retry", extra={"error": repr(exc)})
            return False
        except asyncpg.PostgresError as exc:
            # Data PostgreSQL refuses (never produced by valid requests) must not
            # block every later flush: report it and drop this batch's rows.
            log.error(
                "flush rejected by PostgreSQL; dropping its rows",
                extra={"error": repr(exc), "marks": len(marks), "chat": len(chat)},
            )
            self._marks, self._chat = [], []
            return False
        self._marks, self._chat = [], []
        for checkpoint, _, _ in ends:
            self.pending_ends.pop(checkpoint.session, None)
        for actor, checkpoint in zip(written, calls, strict=True):
            actor.flushed = checkpoint
            actor.flushed_at = now
        elapsed = time.perf_counter() - started
        rows = len(calls) + len(streams) + len(marks) + len(chat)
        self.flushes += 1
        self.rows_written += rows
        services.metrics.flush_latency.observe(elapsed)
        services.metrics.flush_rows.observe(rows)
        return True
