"""What a session core asks its shell to do. Cores never do I/O themselves.

A core method changes state and appends effects; the shell (``actor.py``)
drains and performs them: deliver events, talk to the ledger, renew media
tokens, finish the session. Times are plain floats (monotonic seconds).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from protocol.events import SessionEvent


@dataclass(frozen=True, slots=True)
class Emit:
    """Deliver ``event`` to ``to`` (user ids) or to everyone in the session (None).

    ``record``: the event got a sequence number and goes into the recovery buffer.
    """

    event: SessionEvent
    to: tuple[int, ...] | None = None
    record: bool = True


@dataclass(frozen=True, slots=True)
class RequestHold:
    """Reserve up to ``amount`` more tokens of the fan's balance (balancing hold)."""

    number: int
    key: str
    amount: int


@dataclass(frozen=True, slots=True)
class PostHold:
    """Post ``amount`` of hold ``hold_key`` (the rest is released) and pay the creator."""

    key: str
    hold_key: str
    amount: int
    fee: int


@dataclass(frozen=True, slots=True)
class VoidHold:
    key: str
    hold_key: str


@dataclass(frozen=True, slots=True)
class RenewMedia:
    """Issue a fresh media token to ``user`` valid for ``expires_in`` seconds."""

    user: int
    expires_in: int


@dataclass(frozen=True, slots=True)
class Finish:
    """The session is over: settle, persist, tell everyone, stop."""

    reason: str
    ended_by: int | None = None


Effect = Emit | RequestHold | PostHold | VoidHold | RenewMedia | Finish


def new_epoch() -> str:
    return secrets.token_hex(4)


class Sequencer:
    """Sequence numbers and the epoch of one session's recorded events."""

    __slots__ = ("epoch", "seq", "session")

    def __init__(self, session: str, epoch: str) -> None:
        self.session = session
        self.epoch = epoch
        self.seq = 0

    def next(self) -> int:
        self.seq += 1
        return self.seq


class CoreBase:
    """What both session cores share: the effect log and event sequencing.

    Subclasses set ``self.seq`` (a :class:`Sequencer`), ``self.epoch``,
    ``self.session`` and ``self.effects = []`` before emitting.
    """

    session: str
    epoch: str
    seq: Sequencer
    effects: list[Effect]

    def take_effects(self) -> list[Effect]:
        """Hand the accumulated effects to the shell (and forget them)."""
        effects, self.effects = self.effects, []
        return effects

    def _emit(self, event: SessionEvent, to: tuple[int, ...] | None = None) -> None:
        """A recorded event: next sequence number, kept for recovery."""
        event.seq = self.seq.next()
        event.epoch = self.epoch
        self.effects.append(Emit(event, to, record=True))

    def _emit_ephemeral(self, event: SessionEvent, to: tuple[int, ...] | None = None) -> None:
        """An event that is not worth replaying (ticks, typing, counts)."""
        self.effects.append(Emit(event, to, record=False))
