"""Which sockets belong to which user, on this node.

Events addressed to a user reach every socket the user has open (phone and
browser alike). The hub is touched only from the event loop thread, so it
needs no lock. A user's sockets are a small tuple (capped by
``DIGIS_MAX_SOCKETS_PER_USER``): one socket costs 48 bytes, not a set's 216.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from protocol.base import ServerMessage
from server.outbound import Outgoing

if TYPE_CHECKING:
    from server.connection import Connection

PresenceListener = Callable[[int, bool], None]


class Hub:
    def __init__(self) -> None:
        self._by_user: dict[int, tuple[Connection, ...]] = {}
        self._all: set[Connection] = set()
        self._listeners: list[PresenceListener] = []

    def on_presence(self, listener: PresenceListener) -> None:
        """Call ``listener(user_id, online)`` when a user's first/last socket comes/goes."""
        self._listeners.append(listener)

    def register(self, conn: Connection) -> None:
        """A socket opened (not yet authenticated)."""
        self._all.add(conn)

    def unregister(self, conn: Connection) -> None:
        """A socket closed; detach it from its user."""
        self._all.discard(conn)
        if conn.user is not None:
            self.detach(conn, conn.user.id)

    def attach(self, conn: Connection, user_id: int) -> None:
        sockets = self._by_user.get(user_id, ())
        if conn in sockets:
            return
        self._by_user[user_id] = (*sockets, conn)
        if not sockets:
            for listener in self._listeners:
                listener(user_id, True)

    def detach(self, conn: Connection, user_id: int) -> None:
        sockets = self._by_user.get(user_id, ())
        if conn not in sockets:
            return
        rest = tuple(c for c in sockets if c is not conn)
        if rest:
            self._by_user[user_id] = rest
        else:
            del self._by_user[user_id]
            for listener in self._listeners:
                listener(user_id, False)

    def sockets(self, user_id: int) -> tuple[Connection, ...]:
        return self._by_user.get(user_id, ())

    def socket_count(self, user_id: int) -> int:
        return len(self._by_user.get(user_id, ()))

    def online_users(self) -> list[int]:
        return list(self._by_user)

    def is_online(self, user_id: int) -> bool:
        return user_id in self._by_user

    def all_connections(self) -> list[Connection]:
        return list(self._all)

    @property
    def connection_count(self) -> int:
        return len(self._all)

    def send_to_user(self, user_id: int, message: ServerMessage | Outgoing) -> int:
        """Deliver to all of the user's sockets; returns how many were written."""
        return self.send_to_users((user_id,), message)

    def send_to_users(self, user_ids: Iterable[int], message: ServerMessage | Outgoing) -> int:
        out = message if isinstance(message, Outgoing) else Outgoing(message)
        sent = 0
        for user_id in user_ids:
            for conn in self._by_user.get(user_id, ()):
                if conn.send_outgoing(out):
                    sent += 1
        return sent
