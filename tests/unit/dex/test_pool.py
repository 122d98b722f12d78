"""The market-coupled pool: coupling to the market, rebalancing, cost accounting."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.dex.amm import AmmError, PoolState, get_amount_out
from agent.dex.pool import MarketCoupledPool, PoolConfig, TradeResult
from agent.errors import ConfigError

E6 = 10**6
E18 = 10**18
FAST = settings(max_examples=200, deadline=None)
FEE = 0.003


def make_pool(price: float = 3_000.0, **config: object) -> MarketCoupledPool:
    pool = MarketCoupledPool(PoolConfig(**config))  # type: ignore[arg-type]
    pool.reset(price)
    return pool


def value_quote(base_balance: int, quote_balance: int, price: float) -> float:
    """Portfolio value at the market price, in quote units."""
    return quote_balance + base_balance * price * 1e-12


def exposure(base_balance: int, quote_balance: int, price: float) -> float:
    return base_balance * price * 1e-12 / value_quote(base_balance, quote_balance, price)


# ------------------------------------------------------------------ config and reset


def test_default_gas_cost_is_110k_gas_at_20_gwei_and_3000_usd() -> None:
    assert MarketCoupledPool().gas_cost_quote == 6_600_000  # 6.60 USD


@pytest.mark.parametrize(
    "bad",
    [
        {"fee_bps": 1_001},  # the contract's MAX_FEE_BPS is 1,000
        {"fee_bps": -1},
        {"liquidity_quote": 0.0},
        {"liquidity_quote": float("nan")},
        {"gas_price_gwei": -1.0},
        {"min_trade_quote": float("inf")},
    ],
)
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PoolConfig(**bad)  # type: ignore[arg-type]


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(TypeError):
        PoolConfig(depth=1.0)  # type: ignore[call-arg]


def test_reset_creates_reserves_at_the_price_with_the_configured_depth() -> None:
    pool = make_pool(2_500.0, liquidity_quote=1_000_000.0)
    assert pool.state is not None
    assert pool.state.quote == 1_000_000 * E6
    assert pool.price_quote_per_base == pytest.approx(2_500.0, rel=1e-12)
    assert pool.state.total_supply > 0


def test_pool_must_be_reset_first() -> None:
    pool = MarketCoupledPool()
    with pytest.raises(AmmError, match="reset"):
        pool.couple(3_000.0)
    with pytest.raises(AmmError, match="reset"):
        pool.trade_to_exposure(0, 1_000 * E6, 0.5, 3_000.0)


# ------------------------------------------------------------------ coupling


@FAST
@given(st.lists(st.floats(min_value=0.8, max_value=1.25), min_size=1, max_size=10))
def test_couple_puts_the_pool_at_the_market_price(moves: list[float]) -> None:
    pool = make_pool(3_000.0)
    price = 3_000.0
    for move in moves:
        price *= move
        pool.couple(price)
        pool_price = pool.price_quote_per_base
        assert price * (1 - FEE) <= pool_price <= price / (1 - FEE)  # within the fee band
        assert pool_price == pytest.approx(price, rel=1e-9)  # in fact, at the price


@FAST
@given(
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=0.9, max_value=1.1),
    st.integers(min_value=1, max_value=5_000_000),
)
def test_the_agents_trade_does_not_leak_into_the_next_bar(
    target: float, move: float, wealth_usd: int
) -> None:
    traded, untouched = make_pool(3_000.0), make_pool(3_000.0)
    traded.trade_to_exposure(0, wealth_usd * E6, target, 3_000.0)
    next_price = 3_000.0 * move
    traded.couple(next_price)
    untouched.couple(next_price)
    assert traded.price_quote_per_base == pytest.approx(next_price, rel=1e-9)
    assert untouched.price_quote_per_base == pytest.approx(next_price, rel=1e-9)


def test_couple_at_the_same_price_does_nothing() -> None:
    pool = make_pool(3_000.0)
    before = pool.state
    assert pool.couple(3_000.0) is None
    assert pool.state == before


# ------------------------------------------------------------------ trading


@FAST
@given(
    st.integers(min_value=0, max_value=100 * E18),
    st.integers(min_value=0, max_value=300_000 * E6),
    st.floats(min_value=0.0, max_value=1.0),
    st.floats(min_value=100.0, max_value=10_000.0),
)
def test_trade_reaches_the_target_within_its_costs(
    base_balance: int, quote_balance: int, target: float, price: float
) -> None:
    pool = make_pool(price)
    before = value_quote(base_balance, quote_balance, price)
    result = pool.trade_to_exposure(base_balance, quote_balance, target, price)
    assert result.base_balance >= 0
    assert result.quote_balance >= 0
    after = value_quote(result.base_balance, result.quote_balance, price)
    if result.side == "none":
        assert result == TradeResult("none", 0, 0, 0.0, 0.0, 0, base_balance, quote_balance)
        # skipped only when the rebalance, net of the gas it must keep, is below the floor
        gap = abs(target - exposure(base_balance, quote_balance, price)) if before else 0.0
        assert gap * before <= max(5 * E6, pool.gas_cost_quote) + pool.gas_cost_quote + 1
        return
    assert after == pytest.approx(before - result.cost_quote, rel=1e-9, abs=2)
    if before > 0:  # the shortfall is the cost, plus the gas a full buy must keep
        tolerance = (result.cost_quote + pool.gas_cost_quote) / after + 1e-9
        assert abs(exposure(result.base_balance, result.quote_balance, price) - target) <= (
            tolerance
        )


def test_buy_and_sell_balances_follow_the_amm_math() -> None:
    pool = make_pool(3_000.0)
    state = pool.state
    assert state is not None
    result = pool.trade_to_exposure(0, 10_000 * E6, 0.5, 3_000.0)
    assert result.side == "buy"
    assert result.amount_in == 5_000 * E6
    assert result.amount_out == get_amount_out(5_000 * E6, state.quote, state.base, 30)
    assert result.fee_paid_quote == 15 * E6  # 0.30 % of 5,000 USD
    assert result.gas_quote == 6_600_000
    assert result.base_balance == result.amount_out
    assert result.quote_balance == 5_000 * E6 - 6_600_000
    assert pool.state == PoolState(
        state.base - result.amount_out, state.quote + 5_000 * E6, state.total_supply
    )


@pytest.mark.parametrize("side", ["buy", "sell"])
def test_fees_and_impact_are_positive_and_grow_with_trade_size(side: str) -> None:
    fees, impacts = [], []
    for size_usd in (100, 1_000, 10_000, 100_000, 1_000_000):
        pool = make_pool(3_000.0)
        if side == "buy":
            result = pool.trade_to_exposure(0, 2 * size_usd * E6, 0.5, 3_000.0)
        else:
            base = size_usd * E18 // 1_500  # worth 2 * size_usd
            result = pool.trade_to_exposure(base, 0, 0.5, 3_000.0)
        assert result.side == side
        assert result.fee_paid_quote == pytest.approx(size_usd * E6 * FEE, rel=1e-6)
        assert result.price_impact_quote > 0
        fees.append(result.fee_paid_quote)
        impacts.append(result.price_impact_quote)
    assert fees == sorted(fees)
    assert impacts == sorted(impacts)
    # impact is quadratic in size: ~ size**2 / depth
    assert impacts[-1] / impacts[-2] == pytest.approx(100, rel=0.2)


def test_zero_target_from_zero_base_does_nothing_and_costs_nothing() -> None:
    pool = make_pool(3_000.0)
    before = pool.state
    result = pool.trade_to_exposure(0, 10_000 * E6, 0.0, 3_000.0)
    assert result == TradeResult("none", 0, 0, 0.0, 0.0, 0, 0, 10_000 * E6)
    assert result.cost_quote == 0
    assert pool.state == before


def test_rebalances_below_the_minimum_or_the_gas_are_skipped() -> None:
    pool = make_pool(3_000.0, min_trade_quote=5.0)  # gas is 6.60 USD: the floor is the gas
    assert pool.trade_to_exposure(0, 1_000 * E6, 0.006, 3_000.0).side == "none"  # 6.00 USD
    assert pool.trade_to_exposure(0, 1_000 * E6, 0.007, 3_000.0).side == "buy"  # 7.00 USD
    free_gas = make_pool(3_000.0, gas_price_gwei=0.0, min_trade_quote=5.0)
    assert free_gas.trade_to_exposure(0, 1_000 * E6, 0.004, 3_000.0).side == "none"
    assert free_gas.trade_to_exposure(0, 1_000 * E6, 0.006, 3_000.0).side == "buy"


def test_full_exposure_keeps_just_enough_quote_for_gas() -> None:
    pool = make_pool(3_000.0)
    result = pool.trade_to_exposure(0, 10_000 * E6, 1.0, 3_000.0)
    assert result.side == "buy"
    assert result.amount_in == 10_000 * E6 - pool.gas_cost_quote
    assert result.quote_balance == 0


def test_zero_exposure_sells_every_base_unit() -> None:
    pool = make_pool(3_000.0)
    base = 3 * E18 + 123_456_789
    result = pool.trade_to_exposure(base, 0, 0.0, 3_000.0)
    assert result.side == "sell"
    assert result.amount_in == base
    assert result.base_balance == 0
    assert result.quote_balance == result.amount_out - pool.gas_cost_quote


@FAST
@given(
    st.integers(min_value=1_000, max_value=2_000_000),
    st.floats(min_value=0.05, max_value=1.0),
    st.booleans(),
)
def test_round_trip_loses_exactly_fees_impact_and_gas(
    wealth_usd: int, target: float, recouple: bool
) -> None:
    price = 3_000.0
    pool = make_pool(price)
    buy = pool.trade_to_exposure(0, wealth_usd * E6, target, price)
    assert buy.side == "buy"
    if recouple:
        pool.couple(price)
    sell = pool.trade_to_exposure(buy.base_balance, buy.quote_balance, 0.0, price)
    assert sell.side == "sell"
    assert sell.base_balance == 0
    lost = wealth_usd * E6 - sell.quote_balance
    assert lost > 0
    assert lost == pytest.approx(buy.cost_quote + sell.cost_quote, rel=1e-9, abs=2)
    assert buy.gas_quote + sell.gas_quote == 2 * pool.gas_cost_quote
    if recouple:  # against a coupled pool both legs pay impact
        assert sell.price_impact_quote > 0


@pytest.mark.parametrize("target", [-0.01, 1.01, float("nan")])
def test_exposure_outside_0_1_is_refused(target: float) -> None:
    with pytest.raises(AmmError, match="target_exposure"):
        make_pool().trade_to_exposure(0, E6, target, 3_000.0)


@pytest.mark.parametrize("price", [0.0, -3.0, float("nan"), float("inf")])
def test_bad_market_prices_are_refused(price: float) -> None:
    pool = make_pool()
    with pytest.raises(AmmError, match="price"):
        pool.couple(price)
    with pytest.raises(AmmError, match="price"):
        pool.trade_to_exposure(0, E6, 0.5, price)


def test_the_dex_settings_configure_the_pool_field_for_field() -> None:
    """Every `dex` setting is a pool field of the same name: nothing is copied by hand."""
    from dataclasses import fields

    from agent.config import DexSettings

    pool_fields = {f.name for f in fields(PoolConfig)}
    assert set(DexSettings.model_fields) <= pool_fields
    dex = DexSettings(liquidity_quote=123_456.0, fee_bps=5, gas_price_gwei=1.5, min_trade_quote=2)
    pool = PoolConfig.from_settings(dex, fee_bps=7)
    assert {name: getattr(pool, name) for name in DexSettings.model_fields} == {
        **dex.model_dump(),
        "fee_bps": 7,
    }
