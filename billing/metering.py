"""Per-second billing at a per-minute rate, with the remainder carried.

After ``n`` billed seconds at ``rate`` tokens per minute exactly
``floor(n * rate / 60)`` tokens have been charged: each second adds ``rate``
to a carry, whole multiples of 60 become tokens, and the rest is carried to
the next second. A partial token is never charged, so rounding is always in
the fan's favour, and a whole minute costs exactly ``rate``.
"""

from __future__ import annotations

from dataclasses import dataclass


def tokens_for_seconds(rate_per_minute: int, seconds: int) -> int:
    """Tokens owed for ``seconds`` billed seconds (the closed form)."""
    return rate_per_minute * seconds // 60


def seconds_for_tokens(rate_per_minute: int, tokens: int) -> int:
    """The fewest billed seconds whose charge reaches ``tokens``.

    The inverse of :func:`tokens_for_seconds` from below: for a positive rate,
    ``tokens_for_seconds(rate, seconds_for_tokens(rate, t)) == t``. A free
    call (zero rate) charges nothing, so it maps to zero seconds.
    """
    if rate_per_minute <= 0 or tokens <= 0:
        return 0
    return -(-60 * tokens // rate_per_minute)


@dataclass(slots=True)
class Meter:
    """The running meter of one call."""

    rate_per_minute: int
    seconds: int = 0
    charged: int = 0
    carry: int = 0

    def bill_second(self) -> int:
        """Bill one more second; returns the whole tokens it costs (often 0)."""
        self.seconds += 1
        self.carry += self.rate_per_minute
        tokens, self.carry = divmod(self.carry, 60)
        self.charged += tokens
        return tokens

    def seconds_affordable(self, tokens: int) -> int:
        """How many more seconds can be billed before charges exceed ``tokens``.

        ``floor((carry + k * rate) / 60) <= tokens`` holds for every ``k`` up to
        the returned value. A zero rate is free: a very large number.
        """
        if self.rate_per_minute <= 0:
            return 10**9
        return max(0, (60 * (tokens + 1) - self.carry - 1) // self.rate_per_minute)

    def cost_of_next_second(self) -> int:
        """Tokens the next ``bill_second`` will charge (without billing it)."""
        return (self.carry + self.rate_per_minute) // 60
