"""The integer AMM mirror against Uniswap V2's own formulas, test vectors and invariants."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dex.amm import (
    BASE_DECIMALS,
    MINIMUM_LIQUIDITY,
    QUOTE_DECIMALS,
    AmmError,
    PoolState,
    arbitrage_to_price,
    burn_liquidity,
    from_units,
    get_amount_in,
    get_amount_out,
    mint_liquidity,
    swap_exact_in,
    to_units,
)
from agent.errors import AgoraError

E18 = 10**18
FAST = settings(max_examples=200, deadline=None)

amounts = st.integers(min_value=1, max_value=10**30)
reserves = st.integers(min_value=1, max_value=10**30)


def v2_get_amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut, written out independently (997/1000)."""
    amount_in_with_fee = amount_in * 997
    return (amount_in_with_fee * reserve_out) // (reserve_in * 1000 + amount_in_with_fee)


def v2_get_amount_in(amount_out: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn, written out independently (997/1000)."""
    return (reserve_in * amount_out * 1000) // ((reserve_out - amount_out) * 997) + 1


def v2_babylonian_sqrt(y: int) -> int:
    """UniswapV2 Math.sqrt, line for line."""
    z = 0
    if y > 3:
        z = y
        x = y // 2 + 1
        while x < z:
            z = x
            x = (y // x + x) // 2
    elif y != 0:
        z = 1
    return z


# ------------------------------------------------------------------ get_amount_out / in


def test_get_amount_out_hand_computed_example() -> None:
    # 1e18 in against (10e18, 20e18): 997e18 * 20e18 // (10e18 * 1000 + 997e18)
    assert get_amount_out(E18, 10 * E18, 20 * E18) == 19_940 * E18 // 10_997
    assert get_amount_out(E18, 10 * E18, 20 * E18) == 1_813_221_787_760_298_263


@pytest.mark.parametrize(
    ("swap", "reserve_in", "reserve_out", "expected_out"),
    [  # UniswapV2Pair.spec.ts, "getInputPrice" cases (amounts in ether)
        (1, 5, 10, 1_662_497_915_624_478_906),
        (1, 10, 5, 453_305_446_940_074_565),
        (2, 5, 10, 2_851_015_155_847_869_602),
        (2, 10, 5, 831_248_957_812_239_453),
        (1, 10, 10, 906_610_893_880_149_131),
        (1, 100, 100, 987_158_034_397_061_298),
        (1, 1000, 1000, 996_006_981_039_903_216),
    ],
)
def test_get_amount_out_matches_uniswap_v2_test_vectors(
    swap: int, reserve_in: int, reserve_out: int, expected_out: int
) -> None:
    assert get_amount_out(swap * E18, reserve_in * E18, reserve_out * E18) == expected_out


@FAST
@given(amounts, reserves, reserves)
def test_get_amount_out_with_30_bps_equals_v2_997_formula(
    amount_in: int, reserve_in: int, reserve_out: int
) -> None:
    assert get_amount_out(amount_in, reserve_in, reserve_out, 30) == v2_get_amount_out(
        amount_in, reserve_in, reserve_out
    )


@FAST
@given(reserves, reserves, st.data())
def test_get_amount_in_with_30_bps_equals_v2_997_formula(
    reserve_in: int, reserve_out: int, data: st.DataObject
) -> None:
    if reserve_out < 2:
        reserve_out = 2
    amount_out = data.draw(st.integers(min_value=1, max_value=reserve_out - 1))
    assert get_amount_in(amount_out, reserve_in, reserve_out, 30) == v2_get_amount_in(
        amount_out, reserve_in, reserve_out
    )


@FAST
@given(reserves, reserves, st.integers(min_value=0, max_value=1_000), st.data())
def test_get_amount_in_then_out_delivers_at_least_the_requested_amount(
    reserve_in: int, reserve_out: int, fee_bps: int, data: st.DataObject
) -> None:
    if reserve_out < 2:
        reserve_out = 2
    wanted = data.draw(st.integers(min_value=1, max_value=reserve_out - 1))
    amount_in = get_amount_in(wanted, reserve_in, reserve_out, fee_bps)
    assert get_amount_out(amount_in, reserve_in, reserve_out, fee_bps) >= wanted
    # ... and is at most one unit above the true minimum
    if amount_in > 2:
        assert get_amount_out(amount_in - 2, reserve_in, reserve_out, fee_bps) < wanted


@FAST
@given(amounts, reserves, reserves, st.integers(min_value=0, max_value=9_999))
def test_amount_out_never_drains_the_pool(
    amount_in: int, reserve_in: int, reserve_out: int, fee_bps: int
) -> None:
    assert 0 <= get_amount_out(amount_in, reserve_in, reserve_out, fee_bps) < reserve_out


def test_higher_fee_gives_less_output() -> None:
    outs = [get_amount_out(E18, 10 * E18, 20 * E18, fee) for fee in (0, 5, 30, 100, 1_000)]
    assert outs == sorted(outs, reverse=True)
    assert outs[0] == E18 * 20 * E18 // (11 * E18)  # no fee: plain x*y=k


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (lambda: get_amount_out(0, E18, E18), "INSUFFICIENT_INPUT_AMOUNT"),
        (lambda: get_amount_out(-1, E18, E18), "INSUFFICIENT_INPUT_AMOUNT"),
        (lambda: get_amount_out(1, 0, E18), "INSUFFICIENT_LIQUIDITY"),
        (lambda: get_amount_out(1, E18, 0), "INSUFFICIENT_LIQUIDITY"),
        (lambda: get_amount_in(0, E18, E18), "INSUFFICIENT_OUTPUT_AMOUNT"),
        (lambda: get_amount_in(1, 0, E18), "INSUFFICIENT_LIQUIDITY"),
        (lambda: get_amount_in(1, E18, 0), "INSUFFICIENT_LIQUIDITY"),
        (lambda: get_amount_in(E18, E18, E18), "INSUFFICIENT_LIQUIDITY"),
        (lambda: swap_exact_in(PoolState(E18, E18), "base", 1), "INSUFFICIENT_OUTPUT_AMOUNT"),
        (lambda: swap_exact_in(PoolState(E18, E18), "quote", 0), "INSUFFICIENT_INPUT_AMOUNT"),
    ],
)
def test_errors_carry_the_v2_revert_reason(call: Callable[[], object], reason: str) -> None:
    with pytest.raises(AmmError) as excinfo:
        call()
    assert excinfo.value.reason == reason
    assert isinstance(excinfo.value, AgoraError)
    assert isinstance(excinfo.value, ValueError)


# ------------------------------------------------------------------ swaps and state


@FAST
@given(
    st.integers(min_value=10**6, max_value=10**27),
    st.integers(min_value=10**6, max_value=10**27),
    st.lists(
        st.tuples(st.sampled_from(["base", "quote"]), st.integers(1, 10**26)),
        min_size=1,
        max_size=20,
    ),
)
def test_k_never_decreases_across_swaps(
    base: int, quote: int, swaps: list[tuple[str, int]]
) -> None:
    state = PoolState(base, quote)
    for token_in, amount_in in swaps:
        try:
            result = swap_exact_in(state, token_in, amount_in)  # type: ignore[arg-type]
        except AmmError as error:
            assert error.reason == "INSUFFICIENT_OUTPUT_AMOUNT"
            continue
        assert result.new_state.k >= state.k
        assert result.new_state.base > 0
        assert result.new_state.quote > 0
        state = result.new_state


def test_swap_exact_in_returns_new_state_and_fee_in_input_units() -> None:
    state = PoolState(base=10 * E18, quote=30_000 * 10**6, total_supply=123)
    result = swap_exact_in(state, "quote", 1_000 * 10**6)
    assert result.token_in == "quote"
    assert result.amount_out == get_amount_out(1_000 * 10**6, state.quote, state.base)
    assert result.fee_paid == 3 * 10**6  # 0.30 % of 1,000 USD
    assert result.new_state == PoolState(
        state.base - result.amount_out, state.quote + 1_000 * 10**6, 123
    )
    assert state == PoolState(10 * E18, 30_000 * 10**6, 123)  # the input is untouched
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.base = 1  # type: ignore[misc]


def test_swap_rejects_an_unknown_token() -> None:
    with pytest.raises(AmmError, match="'usd'"):
        swap_exact_in(PoolState(E18, E18), "usd", E18)  # type: ignore[arg-type]


def test_price_is_in_human_units() -> None:
    state = PoolState(base=2 * E18, quote=6_000 * 10**6)
    assert state.price_quote_per_base() == pytest.approx(3_000.0, rel=1e-15)


# ------------------------------------------------------------------ liquidity


@FAST
@given(st.integers(min_value=0, max_value=2**256 - 1))
def test_isqrt_is_uniswap_v2_babylonian_sqrt(y: int) -> None:
    assert math.isqrt(y) == v2_babylonian_sqrt(y)


def test_first_mint_locks_minimum_liquidity() -> None:
    # UniswapV2Pair.spec.ts "mint": 1 and 4 ether -> 2 ether of LP, 1000 of it locked.
    result = mint_liquidity(PoolState(0, 0), E18, 4 * E18)
    assert result.liquidity == 2 * E18 - MINIMUM_LIQUIDITY
    assert result.new_state == PoolState(E18, 4 * E18, 2 * E18)


def test_later_mints_take_the_router_optimal_pair_and_donate_nothing() -> None:
    state = mint_liquidity(PoolState(0, 0), 10 * E18, 40 * E18).new_state  # supply 20e18
    result = mint_liquidity(state, E18, 8 * E18)  # the quote side is over-supplied
    assert (result.amount_base, result.amount_quote) == (E18, 4 * E18)
    assert result.liquidity == min(E18 * 20 * E18 // (10 * E18), 4 * E18 * 20 * E18 // (40 * E18))
    assert result.new_state == PoolState(11 * E18, 44 * E18, 22 * E18)
    other = mint_liquidity(state, 2 * E18, 4 * E18)  # the base side is over-supplied
    assert (other.amount_base, other.amount_quote) == (E18, 4 * E18)


@FAST
@given(
    st.integers(min_value=10**6, max_value=10**30),
    st.integers(min_value=10**6, max_value=10**30),
    st.integers(min_value=1, max_value=10**30),
    st.integers(min_value=1, max_value=10**30),
    st.booleans(),
)
def test_mint_takes_at_most_the_desired_amounts_at_the_pool_ratio(
    base: int, quote: int, want_base: int, want_quote: int, base_is_token0: bool
) -> None:
    state = mint_liquidity(PoolState(0, 0), base, quote).new_state
    try:
        result = mint_liquidity(state, want_base, want_quote, base_is_token0=base_is_token0)
    except AmmError as error:
        assert error.reason in {"INSUFFICIENT_AMOUNT", "INSUFFICIENT_LIQUIDITY_MINTED"}
        return
    assert result.amount_base <= want_base
    assert result.amount_quote <= want_quote
    assert result.amount_base == want_base or result.amount_quote == want_quote
    # the pair is at the pool's ratio, to within the rounding of one side
    assert abs(result.amount_base * quote - result.amount_quote * base) <= max(base, quote)


def test_burn_returns_pro_rata_amounts_and_keeps_the_locked_liquidity() -> None:
    # UniswapV2Pair.spec.ts "burn": 3 and 3 ether in, burn all but the locked 1000.
    minted = mint_liquidity(PoolState(0, 0), 3 * E18, 3 * E18)
    burned = burn_liquidity(minted.new_state, minted.liquidity)
    assert burned.amount_base == 3 * E18 - MINIMUM_LIQUIDITY
    assert burned.amount_quote == 3 * E18 - MINIMUM_LIQUIDITY
    assert burned.new_state == PoolState(MINIMUM_LIQUIDITY, MINIMUM_LIQUIDITY, MINIMUM_LIQUIDITY)
    with pytest.raises(AmmError) as excinfo:
        burn_liquidity(burned.new_state, 1)  # the locked MINIMUM_LIQUIDITY is not burnable
    assert excinfo.value.reason == "INSUFFICIENT_LP_BALANCE"


def test_burning_dust_reverts() -> None:
    state = PoolState(base=10**9, quote=10**30, total_supply=10**20)
    with pytest.raises(AmmError) as excinfo:
        burn_liquidity(state, 10)  # 10 * 1e9 // 1e20 == 0 base
    assert excinfo.value.reason == "INSUFFICIENT_LIQUIDITY_BURNED"


@pytest.mark.parametrize(
    ("amounts", "reason"),
    [
        ((1_000, 1_000), "INSUFFICIENT_LIQUIDITY_MINTED"),  # sqrt == MINIMUM_LIQUIDITY
        ((0, E18), "INSUFFICIENT_AMOUNT"),
        ((E18, 0), "INSUFFICIENT_AMOUNT"),
    ],
)
def test_first_mint_too_small_reverts(amounts: tuple[int, int], reason: str) -> None:
    with pytest.raises(AmmError) as excinfo:
        mint_liquidity(PoolState(0, 0), *amounts)
    assert excinfo.value.reason == reason


def test_reserves_are_capped_at_uint112() -> None:
    state = PoolState(base=2**112 - 10, quote=2**112 - 10)
    assert swap_exact_in(state, "base", 9).new_state.base == 2**112 - 1
    with pytest.raises(AmmError) as excinfo:
        swap_exact_in(state, "base", 10)
    assert excinfo.value.reason == "OVERFLOW"
    with pytest.raises(AmmError) as excinfo:
        mint_liquidity(PoolState(0, 0), 2**112, E18)
    assert excinfo.value.reason == "OVERFLOW"


@FAST
@given(
    st.integers(min_value=10**9, max_value=10**26),
    st.integers(min_value=10**9, max_value=10**26),
    st.data(),
)
def test_mint_then_burn_never_returns_more_than_was_put_in(
    base: int, quote: int, data: st.DataObject
) -> None:
    state = mint_liquidity(PoolState(0, 0), base, quote).new_state
    add_base = data.draw(st.integers(min_value=1, max_value=10 * base))
    add_quote = add_base * quote // base + 1
    try:
        minted = mint_liquidity(state, add_base, add_quote)
        burned = burn_liquidity(minted.new_state, minted.liquidity)
    except AmmError as error:  # dust: too little to mint, or to get both tokens back
        assert error.reason in {
            "INSUFFICIENT_AMOUNT",
            "INSUFFICIENT_LIQUIDITY_MINTED",
            "INSUFFICIENT_LIQUIDITY_BURNED",
        }
        return
    assert burned.amount_base <= add_base
    assert burned.amount_quote <= add_quote
    assert burned.new_state.k >= state.k


# ------------------------------------------------------------------ units


def test_units_round_trip() -> None:
    assert to_units(1.5, QUOTE_DECIMALS) == 1_500_000
    assert to_units(0.1, BASE_DECIMALS) == 10**17
    assert to_units(3_000.123456, QUOTE_DECIMALS) == 3_000_123_456
    assert from_units(1_500_000, QUOTE_DECIMALS) == 1.5
    assert from_units(10**17, BASE_DECIMALS) == 0.1
    with pytest.raises(AmmError):
        to_units(float("nan"), QUOTE_DECIMALS)


# ------------------------------------------------------------------ arbitrage


@FAST
@given(
    st.floats(min_value=10.0, max_value=100_000.0),
    st.floats(min_value=0.5, max_value=2.0),
    st.integers(min_value=0, max_value=1_000),
)
def test_arbitrage_moves_the_pool_to_the_market_price(
    pool_price: float, move: float, fee_bps: int
) -> None:
    quote = 10_000_000 * 10**6
    state = PoolState(base=quote * 10**12 * E18 // int(pool_price * E18), quote=quote)
    market = pool_price * move
    result = arbitrage_to_price(state, market, fee_bps)
    if result is None:
        assert state.price_quote_per_base() == pytest.approx(market, rel=1e-9)
        return
    after = result.new_state.price_quote_per_base()
    assert after == pytest.approx(market, rel=1e-9)
    buying_base = result.token_in == "quote"
    assert buying_base == (state.price_quote_per_base() < market)
    # never overshoots (up to float rounding of the price itself)
    if buying_base:
        assert after <= market * (1 + 1e-12)
    else:
        assert after >= market * (1 - 1e-12)
    assert result.new_state.k >= state.k


def test_arbitrage_without_fee_matches_the_constant_product_closed_form() -> None:
    state = PoolState(base=1_000 * E18, quote=3_000_000 * 10**6)  # 3,000 USD
    result = arbitrage_to_price(state, 3_300.0, fee_bps=0)
    assert result is not None
    # x' = sqrt(k * p) with p = 3,300e6 / 1e18 quote units per base unit
    assert result.amount_in == math.isqrt(state.k * 3_300 * 10**6 // E18) - state.quote


def test_arbitrage_accepts_exact_prices_and_is_none_at_the_price() -> None:
    state = PoolState(base=1_000 * E18, quote=3_000_000 * 10**6)
    assert arbitrage_to_price(state, 3_000.0) is None
    assert arbitrage_to_price(state, Fraction(3_000)) is None
    by_decimal = arbitrage_to_price(state, Decimal("2900.5"))
    by_fraction = arbitrage_to_price(state, Fraction(5801, 2))
    assert by_decimal is not None
    assert by_decimal == by_fraction
    assert by_decimal.token_in == "base"


@pytest.mark.parametrize(
    "price", [0.0, -1.0, float("nan"), float("inf"), Decimal("NaN"), Fraction(-1, 3)]
)
def test_arbitrage_rejects_bad_prices(price: float) -> None:
    with pytest.raises(AmmError):
        arbitrage_to_price(PoolState(E18, E18), price)
