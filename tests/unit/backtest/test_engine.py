"""The engine: one truth with TradingEnv, honest costs, no look-ahead, seeded baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.backtest import engine
from agent.backtest.engine import BacktestConfig, ModelPolicy, SignalMapping, TargetPolicy
from agent.dex.pool import PoolConfig
from agent.env.spec import BASE_SCALE, QUOTE_SCALE
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.errors import ConfigError
from tests.unit.backtest.conftest import build_market, synthetic_candles

START = 48


def _env_run(data: MarketData, actions: np.ndarray, config: BacktestConfig) -> dict[str, Any]:
    """Step TradingEnv itself with continuous actions; collect what it reports."""
    cfg = EnvConfig(
        action="continuous",
        pool=config.pool,
        initial_value_quote=config.initial_value_quote,
        first_bar=START,
    )
    env = TradingEnv(data, cfg)
    start, end = config.window(data)
    _, info = env.reset(options={"start": start, "end": end})
    out: dict[str, list[float]] = {
        "equity": [info["value_quote"]],
        "fee": [],
        "impact": [],
        "gas": [],
        "target": [],
        "base": [],
        "quote": [],
    }
    for action in actions:
        _, _, terminated, truncated, info = env.step(np.array([action]))
        out["equity"].append(info["value_quote"])
        out["fee"].append(info["fee_quote"])
        out["impact"].append(info["impact_quote"])
        out["gas"].append(info["gas_quote"])
        out["target"].append(info["target_exposure"])
        base, quote = env.portfolio
        out["base"].append(base / BASE_SCALE)
        out["quote"].append(quote / QUOTE_SCALE)
        if terminated or truncated:
            break
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_loop_equals_trading_env_bit_for_bit(market: MarketData, seed: int) -> None:
    rng = np.random.default_rng(seed)
    targets = np.repeat(rng.choice([0.0, 0.3, 0.7, 1.0], size=market.bars // 7 + 1), 7)
    policy = TargetPolicy("levels", "baseline", targets[: market.bars], rebalance_band=0.1)
    config = BacktestConfig(start=START)
    result = engine.run_backtest(market, policy, config)
    assert result.swaps > 20, "the run must trade for the comparison to mean anything"

    env = _env_run(market, result.target, config)  # the decisions the engine took
    assert np.array_equal(env["equity"], result.equity)
    assert np.array_equal(env["fee"], result.fee_quote)
    assert np.array_equal(env["impact"], result.impact_quote)
    assert np.array_equal(env["gas"], result.gas_quote)
    assert np.array_equal(env["target"], result.target)
    assert np.array_equal(env["base"], result.base)
    assert np.array_equal(env["quote"], result.quote)


def test_model_policy_runs_through_the_env_and_matches_the_target_loop(market: MarketData) -> None:
    rule = engine.strategy_policy(market, "ma-crossover", SignalMapping("threshold"))
    config = BacktestConfig(start=START)
    by_rule = engine.run_backtest(market, rule, config)
    decisions = iter(by_rule.target.tolist())

    def predict(observation: np.ndarray) -> np.ndarray:
        assert observation.shape == (16 * 3 + 2 * market.n_strategies + 1,)
        return np.array([next(decisions)])

    model = ModelPolicy("replay", predict, EnvConfig(action="continuous"))
    by_model = engine.run_backtest(market, model, config)
    assert by_model.kind == "model"
    assert engine.same_run(by_model, replace(by_rule, name="replay"))
    assert by_model.fingerprint == by_rule.fingerprint


def test_discrete_model_actions_map_to_the_env_exposure_levels(market: MarketData) -> None:
    model = ModelPolicy("half", lambda obs: 2, EnvConfig())  # level 0.5 of 0,.25,.5,.75,1
    result = engine.run_backtest(market, model, BacktestConfig(start=START, end=START + 50))
    assert set(result.target.tolist()) == {0.5}
    assert result.exposure[0] == pytest.approx(0.5, abs=0.01)


def test_threshold_mapping_has_hysteresis_and_holds_without_signal() -> None:
    signal = np.array([0.0, 0.5, 0.05, -0.05, -0.2, 0.05, 0.3, 0.9])
    mask = np.array([False, True, True, True, True, True, False, True])
    targets = engine.signal_to_target(signal, mask, SignalMapping("threshold", 0.2, 0.1, -0.1))
    assert targets.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]


def test_proportional_mapping_trades_only_outside_its_band(market: MarketData) -> None:
    signal = np.array([0.0, 0.1, 0.6, np.nan])
    mask = np.array([True, True, True, False])
    wanted = engine.signal_to_target(signal, mask, SignalMapping("proportional"))
    assert wanted[:3].tolist() == [0.5, 0.55, 0.8] and np.isnan(wanted[3])
    policy = engine.strategy_policy(market, "ma-crossover", SignalMapping("proportional", 0.3))
    result = engine.run_backtest(market, policy, BacktestConfig(start=START))
    moves = np.abs(np.diff(np.concatenate([[0.0], result.target])))
    traded = result.side != 0
    assert np.all(moves[traded] >= 0.3 - 0.02)  # a trade only when outside the band


def test_baselines_are_what_they_say(market: MarketData) -> None:
    config = BacktestConfig(start=START)
    hold = engine.run_backtest(market, engine.buy_and_hold(market), config)
    assert hold.swaps == 1 and hold.exposure[-1] > 0.99
    cash = engine.run_backtest(market, engine.flat(market), config)
    assert cash.swaps == 0 and np.all(cash.equity == config.initial_value_quote)
    first = engine.random_policy(market, seed=5, hold_bars=24)
    again = engine.random_policy(market, seed=5, hold_bars=24)
    other = engine.random_policy(market, seed=6, hold_bars=24)
    assert np.array_equal(first.targets, again.targets)
    assert not np.array_equal(first.targets, other.targets)
    assert set(np.unique(first.targets)) <= {0.0, 1.0}
    assert np.all(first.targets[:24] == first.targets[0])


def test_random_baseline_does_not_depend_on_the_market(market: MarketData) -> None:
    other = build_market(synthetic_candles(market.bars, seed=99), with_signals=False)
    a = engine.random_policy(market, seed=3)
    b = engine.random_policy(other, seed=3)
    assert np.array_equal(a.targets, b.targets)


# --- costs ------------------------------------------------------------------------------


def _flat_market(bars: int = 120, price: float = 250.0) -> MarketData:
    candles = pd.DataFrame(
        {
            "open_time": np.arange(bars, dtype="int64") * 3_600_000,
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "volume": 1.0,
        }
    )
    return build_market(candles, with_signals=False)


def test_costs_reported_equal_the_value_lost_against_a_frictionless_run() -> None:
    data = _flat_market()
    targets = np.tile([0.0, 1.0, 1.0, 0.3, 0.8, 0.0], data.bars // 6 + 1)[: data.bars]
    policy = TargetPolicy("churn", "baseline", targets)
    costly = BacktestConfig(
        pool=PoolConfig(liquidity_quote=200_000.0, fee_bps=30, gas_price_gwei=30.0),
        start=START,
    )
    paid = engine.run_backtest(data, policy, costly)
    free = engine.run_backtest(data, policy, engine.frictionless(costly))
    assert paid.swaps > 40
    assert free.fee_quote.sum() == free.gas_quote.sum() == 0.0
    # a bottomless pool still rounds amounts down to token units: tiny, and reported as impact
    assert 0 <= free.impact_quote.sum() < 1e-3
    for run in (paid, free):
        reported = run.fee_quote.sum() + run.impact_quote.sum() + run.gas_quote.sum()
        assert costly.initial_value_quote - run.equity[-1] == pytest.approx(reported, abs=1e-6)
    lost = free.equity[-1] - paid.equity[-1]
    reported = paid.fee_quote.sum() + paid.impact_quote.sum() + paid.gas_quote.sum()
    assert lost == pytest.approx(reported - free.impact_quote.sum(), abs=1e-6)
    assert paid.fee_quote.sum() > 0 and paid.impact_quote.sum() > 0 and paid.gas_quote.sum() > 0


def test_every_decision_loses_exactly_its_reported_costs(market: MarketData) -> None:
    policy = engine.strategy_policy(market, "rsi-reversion")
    config = BacktestConfig(pool=PoolConfig(liquidity_quote=500_000.0), start=START)
    result = engine.run_backtest(market, policy, config)
    costs = result.fee_quote + result.impact_quote + result.gas_quote
    price = result.close[:-1]
    after_trade = result.base * price + result.quote
    assert np.allclose(result.equity[:-1] - costs, after_trade, rtol=0, atol=1e-6)
    assert np.allclose(result.equity[1:], result.base * result.close[1:] + result.quote, atol=1e-6)


# --- look-ahead -------------------------------------------------------------------------


def _all_runs(data: MarketData) -> list[engine.BacktestResult]:
    config = BacktestConfig(start=START, pool=PoolConfig(liquidity_quote=300_000.0))

    def predict(observation: np.ndarray) -> np.ndarray:
        return np.array(
            [(np.tanh(float(observation @ np.sin(np.arange(len(observation))))) + 1) / 2]
        )

    policies: list[engine.Policy] = [
        *(engine.strategy_policy(data, name) for name in data.strategy_names),
        engine.buy_and_hold(data),
        engine.random_policy(data, seed=1),
        ModelPolicy("model", predict, EnvConfig(action="continuous")),
    ]
    return [engine.run_backtest(data, p, config) for p in policies]


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(cut=st.integers(START + 1, 590), factor=st.floats(0.5, 2.0), seed=st.integers(0, 99))
def test_altering_candles_after_t_changes_nothing_at_or_before_t(
    candles: pd.DataFrame, cut: int, factor: float, seed: int
) -> None:
    altered = candles.copy()
    rng = np.random.default_rng(seed)
    after = altered.index > cut
    noise = factor * np.exp(rng.normal(0, 0.05, int(after.sum())))
    for column in ("open", "high", "low", "close"):
        altered.loc[after, column] = altered.loc[after, column].to_numpy() * noise
    altered.loc[after, "volume"] = altered.loc[after, "volume"].to_numpy() * rng.uniform(
        0.1, 10, int(after.sum())
    )
    original = _all_runs(build_market(candles))
    changed = _all_runs(build_market(altered))
    k = cut - START  # decisions 0..k were taken at or before bar `cut`
    for a, b in zip(original, changed, strict=True):
        for name in ("target", "side", "exposure", "fee_quote", "impact_quote", "base", "quote"):
            assert np.array_equal(getattr(a, name)[: k + 1], getattr(b, name)[: k + 1]), (
                a.name,
                name,
            )
        assert np.array_equal(a.equity[: k + 1], b.equity[: k + 1]), a.name


# --- decision hashing and config --------------------------------------------------------


def test_the_run_fingerprint_changes_with_any_decision(market: MarketData) -> None:
    config = BacktestConfig(start=START, end=START + 100)
    targets = np.zeros(market.bars)
    targets[START + 10 : START + 40] = 1.0
    a = engine.run_backtest(market, TargetPolicy("a", "baseline", targets), config)
    again = engine.run_backtest(market, TargetPolicy("a", "baseline", targets.copy()), config)
    targets[START + 60] = 1.0
    b = engine.run_backtest(market, TargetPolicy("b", "baseline", targets), config)
    assert a.fingerprint == again.fingerprint
    assert a.fingerprint != b.fingerprint and a.fingerprint.startswith("sha256:")


def test_bad_windows_and_policies_are_refused(market: MarketData) -> None:
    with pytest.raises(ConfigError, match="window"):
        BacktestConfig(start=10, end=5).window(market)
    with pytest.raises(ConfigError, match="not in the data"):
        engine.strategy_policy(market, "nope")
    with pytest.raises(ConfigError, match="targets"):
        engine.run_backtest(market, TargetPolicy("x", "baseline", np.ones(3)), BacktestConfig())
    with pytest.raises(ConfigError, match="look"):
        engine.run_backtest(market, ModelPolicy("m", lambda o: 0), BacktestConfig(start=3))
