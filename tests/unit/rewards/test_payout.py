"""Payout: integer splits that never create or lose a unit, in proportion to contributions."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.rewards.payout import (
    TOKEN_UNITS,
    epoch_pool,
    profit_share,
    proportional_amounts,
    quote_to_units,
    split,
)

pools = st.integers(min_value=0, max_value=10**30)
contributions = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
    | st.sampled_from([0.0, -0.0, 5e-324, 1e-300]),
    max_size=30,
)
policies = st.sampled_from(["carry", "treasury"])


@given(pool=pools, values=contributions, policy=policies)
def test_paid_plus_remainder_is_the_pool_exactly(
    pool: int, values: list[float], policy: str
) -> None:
    payout = split(pool, values, policy)  # type: ignore[arg-type]
    assert all(isinstance(a, int) for a in payout.amounts)
    assert sum(payout.amounts) + payout.remainder == pool
    assert payout.paid + payout.carry_out == pool
    if policy == "carry":
        assert (payout.treasury_amount, payout.carry_out) == (0, payout.remainder)
    else:
        assert (payout.treasury_amount, payout.carry_out) == (payout.remainder, 0)


@given(pool=pools, values=contributions, policy=policies)
def test_nobody_is_negative_and_non_positive_contributors_get_nothing(
    pool: int, values: list[float], policy: str
) -> None:
    payout = split(pool, values, policy)  # type: ignore[arg-type]
    assert all(a >= 0 for a in payout.amounts) and payout.remainder >= 0
    assert all(a == 0 for a, v in zip(payout.amounts, values, strict=True) if v <= 0)


@given(pool=pools, values=contributions)
def test_amounts_are_proportional_to_positive_contributions(pool: int, values: list[float]) -> None:
    payout = split(pool, values)
    positive = [Fraction(v) for v in values if v > 0]
    total = sum(positive, Fraction(0))
    paid = [a for a, v in zip(payout.amounts, values, strict=True) if v > 0]
    for amount, weight in zip(paid, positive, strict=True):
        exact = pool * weight / total
        assert exact - 1 < amount <= exact  # rounded down, by less than one unit
    if positive:
        assert payout.remainder < len(positive)  # at most one unit lost per paid contributor
    by_weight = [a for _, a in sorted(zip(positive, paid, strict=True))]
    assert by_weight == sorted(by_weight)  # a larger contribution never earns less


@given(pool=pools, values=st.lists(st.floats(-1e9, 0.0), max_size=10))
def test_with_no_positive_contributor_the_whole_pool_follows_the_remainder_policy(
    pool: int, values: list[float]
) -> None:
    carried = split(pool, values, "carry")
    assert carried.amounts == (0,) * len(values)
    assert (carried.paid, carried.carry_out) == (0, pool)
    to_treasury = split(pool, values, "treasury")
    assert (to_treasury.paid, to_treasury.treasury_amount, to_treasury.carry_out) == (pool, pool, 0)


def test_a_small_split_by_hand() -> None:
    """1,000 units over 1 : 2 : 0 : -4 -> 333 and 666, one unit left."""
    payout = split(1_000, [0.5, 1.0, 0.0, -2.0], "carry")
    assert payout.amounts == (333, 666, 0, 0)
    assert (payout.remainder, payout.carry_out, payout.paid) == (1, 1, 999)


@given(
    emission=pools,
    carry_in=pools,
    profit=st.integers(-(10**30), 10**30),
    bps=st.integers(0, 10_000),
)
def test_the_pool_is_emission_plus_carry_plus_a_share_of_positive_profit(
    emission: int, carry_in: int, profit: int, bps: int
) -> None:
    pool = epoch_pool(emission, carry_in, profit, bps)
    assert pool == emission + carry_in + (max(profit, 0) * bps // 10_000)
    assert 0 <= profit_share(profit, bps) <= max(profit, 0)


def test_profit_in_quote_becomes_token_units_exactly() -> None:
    assert quote_to_units(12.5) == 12 * TOKEN_UNITS + TOKEN_UNITS // 2
    assert quote_to_units(-1.0) == -TOKEN_UNITS
    assert quote_to_units(0.1) == 100_000_000_000_000_005  # 0.1's exact binary value, floored
    with pytest.raises(ValueError, match="finite"):
        quote_to_units(float("inf"))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="remainder policy"):
        split(10, [1.0], "burn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        split(10, [float("nan")])
    with pytest.raises(ValueError, match="pool is -1"):
        split(-1, [1.0])
    with pytest.raises(ValueError, match="integer"):
        epoch_pool(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="profit_share_bps"):
        profit_share(100, 10_001)
    with pytest.raises(ValueError, match=">= 0"):
        proportional_amounts(10, [Fraction(-1)])
