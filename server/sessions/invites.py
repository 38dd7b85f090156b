"""Ringing call invitations: created by a fan, answered or expired.

An invitation rings every socket of the creator until it is accepted,
declined, cancelled by the fan, or expires (``DIGIS_CALL_INVITE_TIMEOUT``),
and both sides are told how it ended. Ended invitations are remembered for a
while so that acting on one gets a clear "expired"/"already answered" error
instead of "not found".
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from protocol import events as ev
from protocol.base import UserRef
from server.hub import Hub

EndReason = Literal["expired", "cancelled", "declined", "answered_elsewhere", "failed"]
REMEMBER_ENDED = 1000


@dataclass
class Invite:
    id: str
    fan: UserRef
    creator: UserRef
    kind: str
    rate: int
    expires_at: float
    state: Literal["ringing", "accepting"] = "ringing"
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


Schedule = Callable[[float, Callable[[str], None], str], asyncio.TimerHandle]


def _call_later(
    delay: float, callback: Callable[[str], None], invite_id: str
) -> asyncio.TimerHandle:
    return asyncio.get_running_loop().call_later(delay, callback, invite_id)


class InviteBook:
    """Ringing invitations. ``schedule`` and ``clock`` are injectable for tests."""

    def __init__(
        self,
        hub: Hub,
        timeout: float,
        *,
        schedule: Schedule = _call_later,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hub = hub
        self.timeout = timeout
        self.schedule = schedule
        self.clock = clock
        self.by_id: dict[str, Invite] = {}
        self.by_fan: dict[int, str] = {}
        self.ended: OrderedDict[str, str] = OrderedDict()

    def ringing_for_creator(self, creator_id: int) -> list[Invite]:
        return [i for i in self.by_id.values() if i.creator.id == creator_id]

    def create(self, fan: UserRef, creator: UserRef, kind: str, rate: int) -> Invite:
        invite = Invite(
            id=secrets.token_hex(8),
            fan=fan,
            creator=creator,
            kind=kind,
            rate=rate,
            expires_at=self.clock() + self.timeout,
        )
        invite.timer = self.schedule(self.timeout, self._expire, invite.id)
        self.by_id[invite.id] = invite
        self.by_fan[fan.id] = invite.id
        self.hub.send_to_user(
            creator.id,
            ev.CallIncoming(
                invite=invite.id,
                fan=fan,
                kind=kind,  # type: ignore[arg-type]
                rate_per_minute=rate,
                expires_at=invite.expires_at,
            ),
        )
        return invite

    def _expire(self, invite_id: str) -> None:
        invite = self.by_id.get(invite_id)
        if invite is not None and invite.state == "ringing":
            self.end(invite, "expired")

    def start_accepting(self, invite: Invite) -> None:
        """Stop the expiry clock: the creator answered and the call is being set up."""
        invite.state = "accepting"
        if invite.timer is not None:
            invite.timer.cancel()

    def end(self, invite: Invite, reason: EndReason, message: str = "") -> None:
        """Remove the invitation and tell both sides how it ended."""
        self._forget(invite, reason)
        event = ev.CallInviteEnded(invite=invite.id, reason=reason, message=message)
        self.hub.send_to_users((invite.fan.id, invite.creator.id), event)

    def accepted(self, invite: Invite, accepting_conn: object) -> None:
        """The call started: stop ringing the creator's other sockets."""
        self._forget(invite, "accepted")
        event = ev.CallInviteEnded(invite=invite.id, reason="answered_elsewhere")
        for conn in self.hub.sockets(invite.creator.id):
            if conn is not accepting_conn:
                conn.send_message(event)

    def _forget(self, invite: Invite, outcome: str) -> None:
        if invite.timer is not None:
            invite.timer.cancel()
        self.by_id.pop(invite.id, None)
        if self.by_fan.get(invite.fan.id) == invite.id:
            del self.by_fan[invite.fan.id]
        self.ended[invite.id] = outcome
        while len(self.ended) > REMEMBER_ENDED:
            self.ended.popitem(last=False)

    def close_all(self) -> None:
        for invite in list(self.by_id.values()):
            self.end(invite, "failed", "server restarting")
