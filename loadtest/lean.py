"""A lean Digis protocol client for high-rate load roles (viewers, senders, tippers).

It speaks exactly the SDK's protocol (``digis.v1.json``, ``auth`` first,
requests with ``id``, answers with ``re``) but on :mod:`loadtest.wsclient`
instead of ``websockets``, and it never decodes a pushed event: events go to
``on_event(payload, received_at)`` as raw JSON bytes, and only answers
(``{"type":"result"...}`` / ``{"type":"error"...}``) are decoded. Every
request is accounted in the shared :class:`~loadtest.stats.Stats`: a count
per type, a round-trip histogram ``rtt:<type>`` and errors by code.

:meth:`LeanClient.request` returns the typed result Struct of
``protocol.results.RESULTS`` (as the SDK does) or raises :class:`LeanError`
with the server's error code; :meth:`LeanClient.send` is fire-and-forget
with an optional callback, for rates where a task per request would cost
more than the request.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

import msgspec

from loadtest.stats import Stats
from loadtest.wsclient import HandshakeRefused, WsProtocol, open_socket
from protocol import requests as rq
from protocol.base import SUBPROTOCOL_JSON, Request, type_tag
from protocol.codec import JSON
from protocol.results import RESULTS

EventCallback = Callable[[bytes, float], None]
#: ``callback(code, result, received_at)``: code is "" on success, else the error code.
ReplyCallback = Callable[[str, msgspec.Raw, float], None]

_REQUESTS: dict[str, type[Request]] = {type_tag(c): c for c in rq.CLIENT_REQUESTS}
_RESULT_PREFIX = b'{"type":"result"'
_ERROR_PREFIX = b'{"type":"error"'


class _ErrorBody(msgspec.Struct, rename="camel"):
    code: str
    message: str = ""


class _Reply(msgspec.Struct):
    type: str
    re: str | None = None
    result: msgspec.Raw = msgspec.Raw(b"null")
    error: _ErrorBody | None = None


_decode_reply = msgspec.json.Decoder(_Reply).decode


class LeanError(Exception):
    """A request failed: the server's error code, or CONNECTION_LOST / TIMEOUT."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code


class LeanClient:
    """One authenticated Digis socket; see the module docstring."""

    def __init__(
        self,
        url: str,
        token: str | None,
        stats: Stats,
        *,
        on_event: EventCallback | None = None,
    ) -> None:
        """A close by the server (or the network) is counted as error ``CLOSED_<code>``."""
        self.url = url
        self.token = token
        self.stats = stats
        self.on_event = on_event
        self.socket: WsProtocol | None = None
        self.close_code: int | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, float, ReplyCallback | None]] = {}
        self._hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def open(self, timeout: float = 15.0) -> None:
        """Connect, wait for ``hello``, authenticate (if a token was given).

        Raises :class:`LeanError` with code ``HTTP_<status>``, ``CONNECT_FAILED``,
        ``TIMEOUT`` or the ``auth`` error code; the socket is closed on failure.
        """
        try:
            async with asyncio.timeout(timeout):
                self.socket = await open_socket(
                    self.url,
                    self._on_message,
                    self._on_closed,
                    subprotocol=SUBPROTOCOL_JSON,
                    timeout=timeout,
                )
                await self._hello
                if self.token is not None:
                    await self.request("auth", timeout=timeout, token=self.token)
        except HandshakeRefused as exc:
            self.close()
            raise LeanError(f"HTTP_{exc.status}", str(exc)) from None
        except TimeoutError:
            self.close()
            raise LeanError("TIMEOUT", "open timed out") from None
        except OSError as exc:
            self.close()
            raise LeanError("CONNECT_FAILED", str(exc)) from None
        except LeanError:
            self.close()
            raise

    def close(self, code: int = 1000) -> None:
        if self.socket is not None:
            self.socket.close(code)

    # --- requests --------------------------------------------------------------------

    def send(
        self, type_name: str, fields: dict[str, Any], callback: ReplyCallback | None = None
    ) -> str | None:
        """Send a request without waiting; its id, or None (counted) if the socket is gone."""
        request_id = str(next(self._ids))
        message = _REQUESTS[type_name](id=request_id, **fields)
        self.stats.add(f"req:{type_name}")
        socket = self.socket
        if socket is None or not socket.send(JSON.encode(message)):
            self.stats.error("CONNECTION_LOST")
            if callback is not None:
                callback("CONNECTION_LOST", msgspec.Raw(b"null"), time.time())
            return None
        self._pending[request_id] = (type_name, time.perf_counter(), callback)
        self.stats.add("inflight")
        return request_id

    async def request(self, type_name: str, *, timeout: float = 15.0, **fields: Any) -> Any:
        """Send and await the typed result; raises :class:`LeanError` on an error answer."""
        future: asyncio.Future[tuple[str, msgspec.Raw]] = asyncio.get_running_loop().create_future()

        def done(code: str, result: msgspec.Raw, _at: float) -> None:
            if not future.done():
                future.set_result((code, result))

        request_id = self.send(type_name, fields, done)
        try:
            async with asyncio.timeout(timeout):
                code, raw = await future
        except TimeoutError:
            if request_id is not None and self._pending.pop(request_id, None) is not None:
                self.stats.add("inflight", -1)
            self.stats.error("TIMEOUT")
            raise LeanError("TIMEOUT", f"{type_name} got no answer in {timeout} s") from None
        if code:
            raise LeanError(code)
        return msgspec.json.decode(raw, type=RESULTS[_REQUESTS[type_name]])

    # --- receiving -------------------------------------------------------------------

    def _on_message(self, payload: bytes, now: float) -> None:
        if payload.startswith(_RESULT_PREFIX) or payload.startswith(_ERROR_PREFIX):
            self._on_reply(payload, now)
        elif not self._hello.done():
            self._hello.set_result(None)
        elif self.on_event is not None:
            self.on_event(payload, now)

    def _on_reply(self, payload: bytes, now: float) -> None:
        try:
            reply = _decode_reply(payload)
        except msgspec.MsgspecError:
            self.stats.error("UNDECODABLE_REPLY")
            return
        pending = self._pending.pop(reply.re or "", None)
        code = reply.error.code if reply.error is not None else ""
        if pending is None:
            if code:
                self.stats.error(code)
            return
        type_name, sent, callback = pending
        self.stats.add("inflight", -1)
        self.stats.observe(f"rtt:{type_name}", (time.perf_counter() - sent) * 1000)
        if code:
            self.stats.error(code)
        else:
            self.stats.add(f"ok:{type_name}")
        if callback is not None:
            callback(code, reply.result, now)

    def _on_closed(self, code: int) -> None:
        self.close_code = code
        if not self._hello.done():
            self._hello.set_exception(LeanError("CONNECTION_LOST", f"closed {code}"))
            self._hello.exception()  # open() may have given up already: nothing to log
        pending, self._pending = self._pending, {}
        self.stats.add("inflight", -len(pending))
        for _type, _sent, callback in pending.values():
            self.stats.error("CONNECTION_LOST")
            if callback is not None:
                callback("CONNECTION_LOST", msgspec.Raw(b"null"), time.time())
        local = self.socket is not None and self.socket.local_close
        if not local:
            self.stats.error(f"CLOSED_{code}")
