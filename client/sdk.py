"""Python client for the Digis socket protocol, on the websockets library.

    async with Client.connect("ws://127.0.0.1:8080/ws", token) as c:
        balance = await c.request("balance.get")
        async for event in c.events():
            ...

Requests return the typed result Struct for their type (see
``protocol.results.RESULTS``) or raise :class:`RequestError`. When the
socket drops with a close code that allows it (``protocol.codes.may_reconnect``)
the client reconnects with jittered exponential backoff, authenticates again
(asking ``token_provider`` for a fresh token when given) and resumes the
sessions it had joined from their last sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from protocol import events as ev
from protocol import requests as rq
from protocol.base import (
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    Request,
    ServerMessage,
    type_tag,
)
from protocol.codec import JSON, MSGPACK, Codec
from protocol.codes import may_reconnect
from protocol.results import RESULTS

log = logging.getLogger("digis.client")

_REQUEST_CLASSES: dict[str, type[Request]] = {type_tag(c): c for c in rq.CLIENT_REQUESTS}
TokenProvider = Callable[[], Awaitable[str]]
EventCallback = Callable[[ServerMessage], None]


class ClientError(Exception):
    """Base of the SDK's errors."""


class RequestError(ClientError):
    """The server answered with an error envelope."""

    def __init__(
        self, code: str, message: str, request_id: str, retry_after_ms: int | None
    ) -> None:
        super().__init__(f"{code}: {message} (request {request_id})")
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after_ms = retry_after_ms


class ConnectionLost(ClientError):
    """The socket closed while a request was in flight (its outcome is unknown)."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"connection closed ({code}) {reason}".strip())
        self.code = code
        self.reason = reason


@dataclass
class _SessionPosition:
    kind: Literal["call", "stream"]
    epoch: str = ""
    seq: int = 0


class Client:
    """One logical connection (which may span several sockets after reconnects)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        encoding: Literal["json", "msgpack"] = "json",
        reconnect: bool = True,
        token_provider: TokenProvider | None = None,
        on_event: EventCallback | None = None,
        max_backoff: float = 10.0,
        open_timeout: float = 10.0,
        auth_in_header: bool = False,
        origin: str | None = None,
    ) -> None:
        self.url = url
        self.token = token
        self.codec: Codec = MSGPACK if encoding == "msgpack" else JSON
        self.reconnect = reconnect
        self.token_provider = token_provider
        self.on_event = on_event
        self.max_backoff = max_backoff
        self.open_timeout = open_timeout
        self.auth_in_header = auth_in_header
        self.origin = origin
        self.user: Any = None
        self.hello: ev.Hello | None = None
        self.close_code: int | None = None
        self.close_reason = ""
        self.reconnects = 0
        self.sessions: dict[str, _SessionPosition] = {}
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._events: asyncio.Queue[ServerMessage | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._closing = False
        self._ready = asyncio.Event()

    # --- lifecycle -------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls, url: str, token: str | None = None, **options: Any
    ) -> AsyncIterator[Client]:
        client = cls(url, token, **options)
        await client.open()
        try:
            yield client
        finally:
            await client.close()

    async def open(self) -> None:
        """Connect and (if a token is known) authenticate."""
        await self._open_socket()
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())
        if self.token is not None and not self.auth_in_header:
            result = await self.request("auth", token=self.token)
            self.user = result.user
        self._ready.set()

    async def _open_socket(self) -> None:
        subprotocol = SUBPROTOCOL_MSGPACK if self.codec.binary else SUBPROTOCOL_JSON
        headers: dict[str, str] = {}
        if self.auth_in_header and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self._ws = await ws_connect(
            self.url,
            subprotocols=[subprotocol],  # type: ignore[list-item]
            additional_headers=headers,
            origin=self.origin,  # type: ignore[arg-type]
            max_size=None,
            open_timeout=self.open_timeout,
            ping_interval=None,
            compression=None,
        )
        first = await asyncio.wait_for(self._ws.recv(), self.open_timeout)
        hello = self.codec.decode_server(first)
        if isinstance(hello, ev.Hello):
            self.hello = hello

    async def close(self) -> None:
        self._closing = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        self._fail_pending(ConnectionLost(self.close_code, "client closed"))
        self._events.put_nowait(None)

    @property
    def connected(self) -> bool:
        return self._ws is not None and self._ws.close_code is None

    # --- requests --------------------------------------------------------------

    async def request(self, type_name: str, *, timeout: float = 15.0, **fields: Any) -> Any:
        """Send request ``type_name`` with ``fields`` (snake_case) and await its result."""
        cls = _REQUEST_CLASSES.get(type_name)
        if cls is None:
            raise ValueError(f"unknown request type {type_name!r}")
        request_id = str(next(self._ids))
        message = cls(id=request_id, **fields)
        return await self.send_request(message, timeout=timeout)

    async def send_request(self, message: Request, *, timeout: float = 15.0) -> Any:
        ws = self._ws
        if ws is None:
            raise ConnectionLost(self.close_code, "not connected")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message.id] = future
        try:
            try:
                await ws.send(self._encode(message))
            except ConnectionClosed as exc:
                raise ConnectionLost(exc.rcvd.code if exc.rcvd else None) from None
            raw_result = await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(message.id, None)
            if future.done() and not future.cancelled():
                # the reader may have failed it while the send was failing too:
                # consume it, or asyncio reports "exception was never retrieved"
                future.exception()
        result_type = RESULTS[type(message)]
        self._track_result(message, raw_result)
        return msgspec.convert(raw_result, result_type)

    async def send_raw(self, data: bytes | str) -> None:
        """Send a raw frame (tests of malformed input)."""
        assert self._ws is not None
        await self._ws.send(data)

    def _encode(self, message: Request) -> bytes | str:
        data = self.codec.encode(message)
        return data if self.codec.binary else data.decode("utf-8")

    # --- events ----------------------------------------------------------------

    async def events(self) -> AsyncIterator[ServerMessage]:
        """Pushed events in arrival order, until the client is closed for good."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def next_event(self, *types: type[ServerMessage], timeout: float = 10.0) -> ServerMessage:
        """The next event of one of ``types`` (others are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                event = await self._events.get()
                if event is None:
                    raise ConnectionLost(self.close_code, self.close_reason)
                if not types or isinstance(event, types):
                    return event

    def drain_events(self) -> list[ServerMessage]:
        """Events already received and not yet consumed."""
        out: list[ServerMessage] = []
        while not self._events.empty():
            event = self._events.get_nowait()
            if event is not None:
                out.append(event)
        return out

    # --- reading -----------------------------------------------------------------

    async def _read_loop(self) -> None:
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for frame in ws:
                    self._on_frame(frame)
            except ConnectionClosed:
                pass
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            self._fail_pending(ConnectionLost(self.close_code, self.close_reason))
            if self._closing or not self.reconnect or not may_reconnect(self.close_code or 1006):
                self._events.put_nowait(None)
                return
            if not await self._reconnect():
                self._events.put_nowait(None)
                return

    def _on_frame(self, frame: bytes | str) -> None:
        try:
            message = self.codec.decode_server(frame)
        except msgspec.MsgspecError:
            log.warning("undecodable frame from server")
            return
        if isinstance(message, ev.Result):
            future = self._pending.get(message.re)
            if future is not None and not future.done():
                future.set_result(message.result)
            return
        if isinstance(message, ev.Error):
            future = self._pending.get(message.re) if message.re is not None else None
            error = RequestError(
                message.error.code,
                message.error.message,
                message.error.request_id,
                message.error.retry_after_ms,
            )
            if future is not None and not future.done():
                future.set_exception(error)
            else:
                self._deliver(message)
            return
        if isinstance(message, ev.SessionEvent) and message.seq > 0:
            position = self.sessions.get(message.session)
            if position is not None:
                position.seq = message.seq
                position.epoch = message.epoch or position.epoch
        self._deliver(message)

    def _deliver(self, message: ServerMessage) -> None:
        if isinstance(message, (ev.CallEnded, ev.StreamEnded)):
            self.sessions.pop(message.session, None)
        if self.on_event is not None:
            self.on_event(message)
        else:
            self._events.put_nowait(message)

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    def _track_result(self, message: Request, result: Any) -> None:
        """Remember joined sessions and their positions, for resuming."""
        if not isinstance(result, dict):
            return
        if isinstance(message, rq.StreamJoin) and "stream" in result:
            self.sessions[message.session] = _SessionPosition(
                "stream", str(result.get("epoch", "")), int(result.get("seq", 0))
            )
        elif isinstance(message, (rq.CallAccept,)) and "session" in result:
            self.sessions[str(result["session"])] = _SessionPosition("call", str(result["epoch"]))
        elif isinstance(message, (rq.StreamLeave, rq.CallEnd)):
            self.sessions.pop(message.session, None)
        elif isinstance(message, rq.StreamStart) and "stream" in result:
            stream = result["stream"]
            self.sessions[str(stream["session"])] = _SessionPosition(
                "stream", str(result.get("epoch", ""))
            )

    def track_call(self, session: str, epoch: str) -> None:
        """Remember a call started by someone else (``call.started``) for resuming."""
        self.sessions.setdefault(session, _SessionPosition("call", epoch))

    async def _reconnect(self) -> bool:
        delay = 0.25
        while not self._closing:
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(self.max_backoff, delay * 2)
            try:
                if self.token_provider is not None:
                    self.token = await self.token_provider()
                await self._open_socket()
                self.reconnects += 1
                self.close_code = None
                if self.token is not None and not self.auth_in_header:
                    asyncio.get_running_loop().create_task(self._resume())
                return True
            except InvalidStatus as exc:
                if exc.response.status_code in (401, 403):
                    return False
            except (OSError, ConnectionClosed, TimeoutError, msgspec.MsgspecError):
                continue
        return False

    async def _resume(self) -> None:
        try:
            await self.request("auth", token=self.token)
            for session, position in list(self.sessions.items()):
                if position.kind == "stream":
                    await self.request(
                        "stream.join", session=session, last_seq=position.seq, epoch=position.epoch
                    )
                else:
                    await self.request(
                        "session.resume",
                        session=session,
                        last_seq=position.seq,
                        epoch=position.epoch,
                    )
        except ClientError as exc:
            log.info("resume after reconnect failed: %s", exc)
