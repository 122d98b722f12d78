"""Turn contributions into integer token amounts: exact, proportional, nothing lost.

An epoch's pool is its emission, plus what the previous epoch carried over, plus an optional
share of the agent's profit. It is split over the strategies with a positive contribution in
proportion to it; zero and negative contributors get nothing. Each amount is rounded down, in
exact rational arithmetic, so the rounding remainder is a known integer (less than the number
of paid strategies), and it goes where the remainder policy says:

- `carry`: into the next epoch's pool (nothing is minted for it now);
- `treasury`: to the treasury, as one more leaf of this epoch.

Either way, published total == sum of the leaves == pool - carry_out: every unit of the pool is
minted exactly once, now or in a later epoch. All amounts are ints; no float ever touches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

RemainderPolicy = Literal["carry", "treasury"]
REMAINDER_POLICIES: tuple[RemainderPolicy, ...] = ("carry", "treasury")
BPS = 10_000
TOKEN_UNITS = 10**18
"""Reward token units per token (AGR has 18 decimals)."""


@dataclass(frozen=True)
class Payout:
    """One epoch's split of its pool.

    Attributes:
        pool: units to distribute this epoch.
        amounts: units per contributor, in the order the contributions were given.
        remainder: units the proportional split could not give out (rounding, or no one to pay).
        remainder_policy: where the remainder goes.
        treasury_amount: the remainder paid to the treasury now (0 under `carry`).
        carry_out: the remainder carried into the next epoch (0 under `treasury`).
    """

    pool: int
    amounts: tuple[int, ...]
    remainder: int
    remainder_policy: RemainderPolicy
    treasury_amount: int
    carry_out: int

    @property
    def paid(self) -> int:
        """Units paid this epoch: the epoch total to publish and mint."""
        return sum(self.amounts) + self.treasury_amount

    def __post_init__(self) -> None:
        if self.paid + self.carry_out != self.pool:
            raise AssertionError(f"payout does not balance: {self}")


def profit_share(profit_units: int, profit_share_bps: int) -> int:
    """Return the profit share added to the pool: bps of a positive profit, rounded down."""
    _check_units("profit_share_bps", profit_share_bps, upper=BPS)
    return max(0, int(profit_units)) * profit_share_bps // BPS


def quote_to_units(profit_quote: float, units_per_quote: int = TOKEN_UNITS) -> int:
    """Return a profit in quote currency as token units (1 token per quote unit), rounded down.

    The float is converted exactly (`Fraction`), so the result depends on nothing but its bits.
    """
    if not math.isfinite(profit_quote):
        raise ValueError(f"profit {profit_quote!r} is not a finite number")
    return math.floor(Fraction(profit_quote) * units_per_quote)


def epoch_pool(
    emission: int, carry_in: int = 0, profit_units: int = 0, profit_share_bps: int = 0
) -> int:
    """Return what an epoch distributes: emission + carried remainder + profit share."""
    _check_units("emission", emission)
    _check_units("carry_in", carry_in)
    return emission + carry_in + profit_share(profit_units, profit_share_bps)


def proportional_amounts(
    pool: int, weights: Sequence[Fraction], total: Fraction | None = None
) -> tuple[list[int], int]:
    """Return (floor(pool * w_i / W) for every weight, remainder).

    W is `total` when given (at least the sum of the weights: the rest of the pool is
    remainder), else the sum of the weights. Weights must be >= 0; with no positive weight,
    everything is remainder.
    """
    _check_units("pool", pool)
    if any(w < 0 for w in weights):
        raise ValueError("proportional weights must be >= 0")
    if total is None:
        total = sum(weights, Fraction(0))
    elif total < sum(weights, Fraction(0)):
        raise ValueError(f"the split's denominator {total} is below the sum of its weights")
    if total == 0:
        return [0] * len(weights), pool
    amounts = [math.floor(pool * w / total) for w in weights]
    return amounts, pool - sum(amounts)


def contribution_weights(contributions: Sequence[float]) -> list[Fraction]:
    """Return each contribution as an exact weight: itself if positive, else 0.

    Raises:
        ValueError: a contribution is NaN or infinite.
    """
    weights = []
    for value in contributions:
        if not math.isfinite(value):
            raise ValueError(f"contribution {value!r} is not a finite number")
        weights.append(Fraction(value) if value > 0 else Fraction(0))
    return weights


def split(
    pool: int,
    contributions: Sequence[float] | Sequence[Fraction],
    remainder_policy: RemainderPolicy = "carry",
    total: Fraction | None = None,
) -> Payout:
    """Split `pool` over positive contributions in proportion to them.

    Args:
        pool: integer token units to distribute.
        contributions: one per contributor; <= 0 earns nothing. Fractions are used exactly.
        remainder_policy: `carry` the remainder to the next epoch, or pay it to the `treasury`.
        total: the split's denominator (default: the sum of the positive contributions, which
            pays the whole pool); a larger one leaves the rest of the pool as remainder.

    Raises:
        ValueError: a negative pool, a non-finite contribution or an unknown policy.
    """
    if remainder_policy not in REMAINDER_POLICIES:
        raise ValueError(
            f"remainder policy {remainder_policy!r}: expected one of {REMAINDER_POLICIES}"
        )
    weights = [
        max(c, Fraction(0)) if isinstance(c, Fraction) else contribution_weights([c])[0]
        for c in contributions
    ]
    amounts, remainder = proportional_amounts(pool, weights, total)
    to_treasury = remainder if remainder_policy == "treasury" else 0
    return Payout(
        pool=pool,
        amounts=tuple(amounts),
        remainder=remainder,
        remainder_policy=remainder_policy,
        treasury_amount=to_treasury,
        carry_out=remainder - to_treasury,
    )


def _check_units(name: str, value: int, *, upper: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer number of units, not {value!r}")
    if value < 0 or (upper is not None and value > upper):
        bound = f"0 … {upper}" if upper is not None else ">= 0"
        raise ValueError(f"{name} is {value}; expected {bound}")
