"""Purchase reconciliation: what Stripe's facts require of the ledger (pure).

Each webhook only adds a fact to a purchase (paid; cumulative refunded cents;
dispute open/won/lost). :func:`settle` computes, from the facts, the position
already booked and the wallet's spendable balance, the exact movements that
bring the ledger to where the facts say it should be. Because the facts only
grow and what the user owes never shrinks, every arrival order of the same
events (duplicates included) ends in the same balances.

Who owes what, in tokens ``T`` bought for ``A`` cents:

* refunded ``R`` cents: ``floor(T * R / A)`` back (rounding for the user);
* a dispute puts ``floor(T * D / A)`` at stake (capped at what refunds left):
  frozen while open, released when won, owed when lost.

What is owed is taken from the purchase's frozen tokens, then the wallet up
to its spendable balance; the rest becomes debt on the user's receivable
account and flags the user. A wallet never goes negative.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.payments import PurchaseRow


@dataclass(frozen=True, slots=True)
class Facts:
    """What Stripe has told us about one purchase."""

    tokens: int
    amount_cents: int
    paid: bool
    refunded_cents: int = 0
    dispute: str | None = None  # None | "open" | "won" | "lost"
    dispute_cents: int = 0

    def _share(self, cents: int) -> int:
        return self.tokens * min(cents, self.amount_cents) // self.amount_cents

    @property
    def refund_tokens(self) -> int:
        return self._share(self.refunded_cents)

    @property
    def at_stake(self) -> int:
        """Tokens an open or lost dispute concerns, beyond what refunds took back."""
        if self.dispute not in ("open", "lost"):
            return 0
        return min(self._share(self.dispute_cents), self.tokens - self.refund_tokens)

    @property
    def owed(self) -> int:
        """Tokens the user must give back; never decreases as facts arrive."""
        return self.refund_tokens + (self.at_stake if self.dispute == "lost" else 0)


@dataclass(frozen=True, slots=True)
class Position:
    """What is booked for the purchase: credited, taken back, debt, frozen now."""

    credited: bool
    clawed: int
    debt: int
    frozen: int


@dataclass(frozen=True, slots=True)
class Settlement:
    credit: int
    from_frozen: int
    from_wallet: int
    debt: int
    release: int
    freeze: int
    position: Position


def settle(facts: Facts, position: Position, wallet: int) -> Settlement:
    """Movements taking ``position`` to what ``facts`` require, given the wallet's
    spendable tokens (before any credit)."""
    if not facts.paid:
        return Settlement(0, 0, 0, 0, 0, 0, position)
    credit = 0 if position.credited else facts.tokens
    wallet += credit
    need = max(0, facts.owed - position.clawed - position.debt)
    take = min(need, wallet + position.frozen)
    from_frozen = min(position.frozen, take)
    from_wallet = take - from_frozen
    frozen = position.frozen - from_frozen
    wallet -= from_wallet
    target = min(facts.at_stake if facts.dispute == "open" else 0, wallet + frozen)
    return Settlement(
        credit=credit,
        from_frozen=from_frozen,
        from_wallet=from_wallet,
        debt=need - take,
        release=max(0, frozen - target),
        freeze=max(0, target - frozen),
        position=Position(True, position.clawed + take, position.debt + need - take, target),
    )


def status_of(facts: Facts, failed: bool) -> str:
    if not facts.paid:
        return "failed" if failed else "pending"
    if facts.dispute is not None:
        return {"open": "disputed", "won": "dispute_won", "lost": "dispute_lost"}[facts.dispute]
    if facts.refunded_cents >= facts.amount_cents:
        return "refunded"
    return "partially_refunded" if facts.refunded_cents > 0 else "succeeded"


def facts_of(row: PurchaseRow) -> Facts:
    return Facts(
        tokens=row.tokens,
        amount_cents=row.amount_cents,
        paid=row.paid,
        refunded_cents=row.refunded_cents,
        dispute=row.dispute_status,
        dispute_cents=row.dispute_cents,
    )


def position_of(row: PurchaseRow) -> Position:
    return Position(row.paid, row.tokens_clawed, row.debt_tokens, row.frozen_tokens)
