"""Invitations on a fake clock: ring, expire, cancel, decline, answered elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import events as ev
from protocol.base import UserRef
from server.sessions.invites import InviteBook

FAN = UserRef(id=1, username="fan")
CREATOR = UserRef(id=2, username="creator", role="creator")


@dataclass
class FakeHandle:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeTimers:
    now: float = 1000.0
    pending: list[tuple[float, Any, str, FakeHandle]] = field(default_factory=list)

    def schedule(self, delay: float, callback: Any, invite_id: str) -> FakeHandle:
        handle = FakeHandle()
        self.pending.append((self.now + delay, callback, invite_id, handle))
        return handle

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [p for p in self.pending if p[0] <= self.now]
        self.pending = [p for p in self.pending if p[0] > self.now]
        for _, callback, invite_id, handle in due:
            if not handle.cancelled:
                callback(invite_id)


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send_message(self, message: Any) -> bool:
        self.sent.append(message)
        return True


class FakeHub:
    def __init__(self) -> None:
        self.events: list[tuple[int, Any]] = []
        self.socket = FakeSocket()

    def send_to_user(self, user: int, message: Any) -> int:
        self.events.append((user, message))
        return 1

    def send_to_users(self, users: Any, message: Any) -> int:
        for user in users:
            self.send_to_user(user, message)
        return 1

    def sockets(self, user: int) -> set[Any]:
        return {self.socket}


def book() -> tuple[InviteBook, FakeHub, FakeTimers]:
    hub, timers = FakeHub(), FakeTimers()
    invites = InviteBook(hub, 30.0, schedule=timers.schedule, clock=lambda: timers.now)  # type: ignore[arg-type]
    return invites, hub, timers


def ended(hub: FakeHub) -> list[tuple[int, str]]:
    return [(u, m.reason) for u, m in hub.events if isinstance(m, ev.CallInviteEnded)]


def test_an_unanswered_invitation_expires_after_the_timeout() -> None:
    invites, hub, timers = book()
    invite = invites.create(FAN, CREATOR, "video", 60)
    assert invite.expires_at == 1030.0
    assert [type(m) for _, m in hub.events] == [ev.CallIncoming]
    timers.advance(29.9)
    assert invite.id in invites.by_id and not ended(hub)
    timers.advance(0.2)
    assert ended(hub) == [(FAN.id, "expired"), (CREATOR.id, "expired")]
    assert invite.id not in invites.by_id and invites.ended[invite.id] == "expired"
    assert FAN.id not in invites.by_fan


def test_answering_stops_the_clock() -> None:
    invites, hub, timers = book()
    invite = invites.create(FAN, CREATOR, "voice", 30)
    invites.start_accepting(invite)
    timers.advance(60)
    assert not ended(hub)  # being accepted: never expires under the creator
    invites.accepted(invite, accepting_conn=None)
    assert invites.ended[invite.id] == "accepted"
    assert [m.reason for m in hub.socket.sent] == ["answered_elsewhere"]


def test_cancel_and_decline_tell_both_sides_once() -> None:
    invites, hub, timers = book()
    first = invites.create(FAN, CREATOR, "video", 60)
    invites.end(first, "cancelled")
    second = invites.create(FAN, CREATOR, "video", 60)
    invites.end(second, "declined")
    timers.advance(100)
    assert ended(hub) == [
        (FAN.id, "cancelled"),
        (CREATOR.id, "cancelled"),
        (FAN.id, "declined"),
        (CREATOR.id, "declined"),
    ]
