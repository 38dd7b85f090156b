"""Call end rows written together: a mass hang-up costs a few transactions, not thousands.

A call that ends hands its final totals here and awaits the answer. One
writer task takes everything queued so far and writes it in one
transaction (``storage.sessions.end_calls``), then answers each caller with
the end reason stored for its call: its own, or the one already there if
the call had been ended before (settled by another node, say). While a batch
is being written the next one gathers, so a lone hang-up waits for one
round trip and five thousand simultaneous ones share a handful.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from storage import sessions as store
from storage.sessions import CallCheckpoint


@dataclass(slots=True)
class _End:
    checkpoint: CallCheckpoint
    reason: str
    ended_at: float
    answer: asyncio.Future[str | None]


class CallEnds:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.batches = 0
        self._queue: list[_End] = []
        self._wake = asyncio.Event()

    async def end(self, checkpoint: CallCheckpoint, reason: str, ended_at: float) -> str | None:
        """Write the call's end; the end reason its row holds (None: no row).

        Raises what the write raised (PostgreSQL away, say): the caller
        decides whether to retry. Cancelling the wait does not withdraw the
        end; it may still be written with its batch.
        """
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_End(checkpoint, reason, ended_at, answer))
        self._wake.set()
        return await answer

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[_End]) -> None:
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await store.end_calls(conn, [(e.checkpoint, e.reason, e.ended_at) for e in batch])
                reasons = await store.end_reasons(conn, [e.checkpoint.session for e in batch])
        except asyncio.CancelledError:
            for end in batch:
                if not end.answer.done():
                    end.answer.cancel()
            raise
        except Exception as exc:
            for end in batch:
                if not end.answer.done():
                    end.answer.set_exception(exc)
            return
        self.batches += 1
        for end in batch:
            if not end.answer.done():
                end.answer.set_result(reasons.get(end.checkpoint.session))
