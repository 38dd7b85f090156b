"""The fan-out workload shared by ``stream`` and ``compare``: viewers, senders, a sink.

One chat line from a sender must reach every viewer. Each sent line's text
starts with the sender's wall-clock send time in microseconds (16 digits);
every viewer's :class:`Sink` finds ``"text":"`` in the raw frame, reads
those digits and records publish->receive latency, without decoding JSON.
That works unchanged for the three servers compared, whose frames all carry
the line as ``"text":"...``: Digis ``session.chat``, the bare peer's
``{"type":"chat",...}`` and Socket.IO's ``42["chat",{...}]``.

Dialects (how a viewer connects and how a sender sends):

* ``digis`` -- :class:`~loadtest.lean.LeanClient`: ``auth``, ``stream.join``,
  then ``chat.send`` (acknowledged; only acknowledged lines are expected to
  be delivered) and optionally ``tip.send`` (``session.tip`` deliveries);
* ``bare`` -- a raw WebSocket to the bare peer; a line is ``{"text": ...}``;
* ``sio`` -- raw engine.io v4 over WebSocket (open ``0``, connect ``40``,
  events ``42[...]``, answering pings ``2`` with ``3``). python-socketio's
  own AsyncClient would cost the client several times more per message
  than the server under test, so the comparison would measure the client.

Every dialect is driven by the same worker and the same sink, so whatever
the client costs, it costs the same for every server.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Coroutine
from typing import Any, Protocol

import msgspec

from loadtest.lean import LeanClient, LeanError
from loadtest.stats import Histogram, Stats
from loadtest.workers import WorkerContext
from loadtest.wsclient import HandshakeRefused, WsProtocol, open_socket

CHAT_MARK = b'"text":"'
TIP_PREFIX = b'{"type":"session.tip"'
_STAMP = 16
_json = msgspec.json.Encoder()


class Sink:
    """Counts deliveries of one stream and their latency; the per-frame hot path."""

    __slots__ = ("chats", "hist", "last_at", "other", "tips")

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self.chats = 0
        self.tips = 0
        self.other = 0
        self.last_at = 0.0

    def on_frame(self, payload: bytes, now: float) -> None:
        i = payload.find(CHAT_MARK)
        if i >= 0:
            start = i + len(CHAT_MARK)
            try:
                sent_us = int(payload[start : start + _STAMP])
            except ValueError:
                self.other += 1
                return
            self.chats += 1
            self.last_at = now
            self.hist.record((now - sent_us * 1e-6) * 1000.0)
        elif payload.startswith(TIP_PREFIX):
            self.tips += 1
            self.last_at = now
        else:
            self.other += 1


def chat_text(size: int) -> str:
    """A chat line stamped with the current wall time, padded to ``size`` characters."""
    stamp = f"{int(time.time() * 1e6):016d} "
    return stamp + "x" * max(0, size - len(stamp))


class Viewer(Protocol):
    def chat(self, text: str) -> None: ...
    def tip(self, amount: int) -> None: ...
    def close(self) -> None: ...


class DigisViewer:
    """A Digis viewer (and possible sender/tipper) on a LeanClient."""

    def __init__(self, client: LeanClient, session: str, stats: Stats, stream: int) -> None:
        self.client = client
        self.session = session
        self.stats = stats
        self.chat_ok = f"chat.accepted.s{stream}"
        self.tip_ok = f"tip.accepted.s{stream}"
        self.tip_amount = f"tip.amount.s{stream}"

    def chat(self, text: str) -> None:
        self.client.send("chat.send", {"session": self.session, "text": text}, self._chat_done)

    def _chat_done(self, code: str, _result: msgspec.Raw, _at: float) -> None:
        if not code:
            self.stats.add(self.chat_ok)

    def tip(self, amount: int) -> None:
        fields = {"session": self.session, "amount": amount}
        self.client.send("tip.send", fields, functools.partial(self._tip_done, amount))

    def _tip_done(self, amount: int, code: str, _result: msgspec.Raw, at: float) -> None:
        if not code:
            self.stats.add(self.tip_ok)
            self.stats.add(self.tip_amount, amount)
            self.stats.moment("tip_ok", at)

    def close(self) -> None:
        self.client.close()


class RawViewer:
    """A viewer of a peer: ``bare`` JSON lines or ``sio`` engine.io packets."""

    def __init__(self, sink: Sink, stats: Stats, stream: int, sio: bool) -> None:
        self.sink = sink
        self.stats = stats
        self.sio = sio
        self.chat_ok = f"chat.accepted.s{stream}"
        self.socket: WsProtocol | None = None
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_open(self, socket: WsProtocol) -> None:
        self.socket = socket

    def on_message(self, payload: bytes, now: float) -> None:
        if not self.sio or payload.startswith(b"42"):
            self.sink.on_frame(payload, now)
        elif payload == b"2" and self.socket is not None:
            self.socket.send(b"3")
        elif payload.startswith(b"40") and not self.joined.done():
            self.joined.set_result(None)
        elif payload.startswith(b"0") and self.socket is not None:
            self.socket.send(b"40")

    def on_close(self, code: int) -> None:
        if self.sio and not self.joined.done():
            self.joined.set_exception(ConnectionResetError(f"closed {code}"))
            self.joined.exception()  # the join may have timed out already: nothing to log
        if self.socket is None or not self.socket.local_close:
            self.stats.error(f"CLOSED_{code}")

    def chat(self, text: str) -> None:
        if self.sio:
            data = b"42" + _json.encode(["chat", {"text": text}])
        else:
            data = _json.encode({"text": text})
        if self.socket is not None and self.socket.send(data):
            self.stats.add(self.chat_ok)
        else:
            self.stats.error("CONNECTION_LOST")

    def tip(self, amount: int) -> None:
        raise NotImplementedError("peers have no tips")

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()


async def connect_viewer(
    dialect: str,
    base_url: str,
    user: list[Any] | None,
    session: str,
    sink: Sink,
    stats: Stats,
    stream: int,
) -> Viewer:
    """Connect and join one viewer; raises LeanError/OSError/TimeoutError on failure."""
    host = base_url.split("://", 1)[1].rstrip("/")
    if dialect == "digis":
        token = str(user[1]) if user else None
        client = LeanClient(f"ws://{host}/ws", token, stats, on_event=sink.on_frame)
        await client.open()
        await client.request("stream.join", session=session)
        return DigisViewer(client, session, stats, stream)
    sio = dialect == "sio"
    viewer = RawViewer(sink, stats, stream, sio)
    path = "/socket.io/?EIO=4&transport=websocket" if sio else "/ws"
    await open_socket(
        f"ws://{host}{path}", viewer.on_message, viewer.on_close, on_open=viewer.on_open
    )
    if sio:
        async with asyncio.timeout(10):
            await viewer.joined
    return viewer


class FanoutRole:
    """Viewers of one or more streams, some of them senders; a worker role.

    Params: ``dialect``, ``text_bytes``, ``duration``, ``concurrency`` and
    ``groups`` -- one per stream: ``url`` (server base URL), ``session``,
    ``stream`` (index), ``users`` (``[id, token]`` pairs; or ``count`` for
    peers), ``senders`` (the first that many connected viewers send),
    ``rate`` (lines/s from this worker), ``tip_rate`` and ``tip_amount``.
    Counters: ``viewers.s<k>``, ``chat.accepted.s<k>``, ``tip.accepted.s<k>``,
    ``deliveries.chat.s<k>``, ``deliveries.tip.s<k>``.
    """

    def __init__(self, ctx: WorkerContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.params = params
        self.dialect = str(params["dialect"])
        self.groups: list[tuple[dict[str, Any], Sink, list[Viewer]]] = [
            (group, Sink(ctx.stats.histogram("delivery")), []) for group in params["groups"]
        ]
        ctx.collectors.append(self._collect)

    async def setup(self) -> None:
        limit = asyncio.Semaphore(int(self.params.get("concurrency", 100)))
        jobs: list[Coroutine[Any, Any, None]] = []
        for group, sink, viewers in self.groups:
            users = group.get("users") or [None] * int(group.get("count", 0))
            jobs.extend(self._connect(limit, group, sink, viewers, user) for user in users)
        await asyncio.gather(*jobs)

    async def _connect(
        self,
        limit: asyncio.Semaphore,
        group: dict[str, Any],
        sink: Sink,
        viewers: list[Viewer],
        user: Any,
    ) -> None:
        stats = self.ctx.stats
        async with limit:
            try:
                viewer = await connect_viewer(
                    self.dialect,
                    group["url"],
                    user,
                    group["session"],
                    sink,
                    stats,
                    group["stream"],
                )
            except LeanError as exc:
                stats.error(exc.code)
                return
            except HandshakeRefused as exc:
                stats.error(f"HTTP_{exc.status}")
                return
            except (OSError, TimeoutError):
                stats.error("CONNECT_FAILED")
                return
            viewers.append(viewer)
            stats.add(f"viewers.s{group['stream']}")
            stats.add("clients.connected")

    def _collect(self) -> None:
        stats = self.ctx.stats
        for group, sink, _viewers in self.groups:
            k = group["stream"]
            stats.counters[f"deliveries.chat.s{k}"] = sink.chats
            stats.counters[f"deliveries.tip.s{k}"] = sink.tips
            stats.counters[f"frames.other.s{k}"] = sink.other
            if sink.last_at:
                stats.moment("delivery", sink.last_at)

    async def run(self) -> None:
        """Send each group's lines (and tips) at its rate, round-robin over its senders."""
        ctx = self.ctx
        duration = float(self.params["duration"])
        text_bytes = int(self.params.get("text_bytes", 48))
        sent = [0] * len(self.groups)
        tipped = [0] * len(self.groups)
        plans = [  # fixed for the run: worked out once, not every 5 ms
            (
                viewers[: int(group["senders"])],
                float(group["rate"]),
                float(group.get("tip_rate", 0)),
                int(group.get("tip_amount", 1)),
            )
            for group, _sink, viewers in self.groups
        ]
        while not ctx.stopping.is_set():
            elapsed = time.time() - ctx.go_at
            if elapsed >= duration:
                break
            for g, (senders, rate, tip_rate, amount) in enumerate(plans):
                if not senders:
                    continue
                due = int(elapsed * rate)
                while sent[g] < due:
                    senders[sent[g] % len(senders)].chat(chat_text(text_bytes))
                    sent[g] += 1
                    ctx.stats.add("chat.sent")
                due_tips = int(elapsed * tip_rate)
                while tipped[g] < due_tips:
                    senders[(tipped[g] + len(senders) // 2) % len(senders)].tip(amount)
                    tipped[g] += 1
                    ctx.stats.add("tip.sent")
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        for _group, _sink, viewers in self.groups:
            for viewer in viewers:
                with contextlib.suppress(Exception):
                    viewer.close()
        await asyncio.sleep(0.2)
