"""Seeded users: the JSON file ``digis seed`` writes, split into fans and creators.

``digis seed --out FILE`` writes ``{"run", "password", "users": [{"id",
"username", "role", "token"}]}``; :func:`load_roster` reads it. A scenario
takes users with :meth:`Roster.take`, which hands out each user once per run
so that no two clients fight over a per-user limit (sockets, chat rate, a
creator's single call) unless a scenario asks for that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


class RosterError(Exception):
    """The seed file is missing, malformed, or has too few users of a role."""


@dataclass(frozen=True, slots=True)
class SeededUser:
    id: int
    username: str
    role: str
    token: str


@dataclass
class Roster:
    fans: list[SeededUser]
    creators: list[SeededUser]
    _used: dict[str, int] = field(default_factory=lambda: {"fan": 0, "creator": 0})

    def take(self, role: Literal["fan", "creator"], n: int) -> list[SeededUser]:
        """The next ``n`` unused users of ``role``; raises RosterError if too few."""
        pool = self.fans if role == "fan" else self.creators
        start = self._used[role]
        if start + n > len(pool):
            raise RosterError(
                f"the seed has {len(pool)} {role}s, this run needs at least {start + n} "
                f"(seed more: digis seed --{role}s N)"
            )
        self._used[role] = start + n
        return pool[start : start + n]


def load_roster(path: Path) -> Roster:
    """Read a ``digis seed`` file; raises :class:`RosterError` with a readable reason."""
    try:
        document = json.loads(path.read_text("utf-8"))
        users = [
            SeededUser(int(u["id"]), str(u["username"]), str(u["role"]), str(u["token"]))
            for u in document["users"]
        ]
    except FileNotFoundError:
        raise RosterError(f"seed file {path} does not exist") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RosterError(f"seed file {path} is not a `digis seed` document: {exc}") from None
    return Roster(
        fans=[u for u in users if u.role == "fan"],
        creators=[u for u in users if u.role == "creator"],
    )
