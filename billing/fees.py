"""The platform fee, in integer tokens, never rounded in the platform's favour.

Fees are basis points (``DIGIS_PLATFORM_FEE_PERCENT`` 20 -> 2000 bps) and are
rounded *down*: the creator keeps every fractional token. For a metered call
the fee is computed on the cumulative charge, so many small postings never
add up to more than the fee on their sum.
"""

from __future__ import annotations

BPS = 10_000


def fee_on(amount: int, fee_bps: int) -> int:
    """Platform fee on a single credit of ``amount`` tokens (floor)."""
    if amount < 0 or not 0 <= fee_bps < BPS:
        raise ValueError("amount must be >= 0 and fee_bps in [0, 10000)")
    return amount * fee_bps // BPS


def fee_increment(charged_before: int, charged_after: int, fee_bps: int) -> int:
    """Fee due when a running total grows from ``charged_before`` to ``charged_after``.

    The sum of increments over any sequence of postings equals
    ``fee_on(final_total)``, so splitting a call into postings changes nothing.
    """
    if charged_after < charged_before:
        raise ValueError("a running total cannot shrink")
    return fee_on(charged_after, fee_bps) - fee_on(charged_before, fee_bps)
