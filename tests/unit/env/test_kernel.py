"""The compiled rollout kernel against the exact integer mirror, trade for trade.

The kernel holds token units in float64 (`agent.env.kernel`); the mirror holds them as Python
integers and is what goes on-chain. Over 100,000 bars, for a rule policy at the shipped costs
and for a trained policy, both must make the same trades at the same bars (zero tolerance) and
agree on equity, fees, impact and gas within `EQUITY_RTOL`. The kernel path must also be as
causal as the environment: candles after bar t change nothing decided at or before t.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from stable_baselines3 import PPO

from agent.config import StrategiesSettings, SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.env import kernel
from agent.env.rollout import ModelPolicy, RolloutResult, TargetPolicy, rollout
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.learn.inference import NumpyPolicy
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies

BARS = 100_100
STRATEGIES = ("ma-crossover", "rsi-reversion", "planted-oracle")
MONEY = ("equity", "fee_quote", "impact_quote", "gas_quote", "traded_quote", "base", "quote")


def _data(candles: pd.DataFrame, planted: np.ndarray) -> MarketData:
    data, reasons = build_market_data(
        candles,
        resolve_strategies(STRATEGIES),
        hidden={"planted": planted},
        settings=StrategiesSettings(fixtures=["planted-oracle"]),
    )
    assert not reasons
    return data


@pytest.fixture(scope="module")
def market() -> Any:
    return generate(SyntheticSettings(seed=11, bars=BARS), "1h")


@pytest.fixture(scope="module")
def data(market: Any) -> MarketData:
    return _data(market.candles, market.planted)


@pytest.fixture(scope="module")
def trained(data: MarketData) -> NumpyPolicy:
    torch.set_num_threads(1)
    env = TradingEnv(data, EnvConfig(lookback_bars=4, episode_bars=256, first_bar=48))
    model = PPO(
        "MlpPolicy", env, seed=0, device="cpu", n_steps=128, batch_size=64,
        policy_kwargs={"net_arch": [32, 32]},
    )  # fmt: skip
    model.learn(256)
    return NumpyPolicy.from_model(model)


def _cheap() -> EnvConfig:
    """Costs a policy that trades most bars survives: a deep pool, 1 bps, almost no gas."""
    return EnvConfig(
        pool=PoolConfig(liquidity_quote=1e10, fee_bps=1, gas_price_gwei=0.01, min_trade_quote=1.0)
    )


def _assert_same_run(fast: RolloutResult, exact: RolloutResult) -> float:
    """Assert trade-for-trade agreement; return the largest relative equity difference."""
    assert fast.decisions == exact.decisions
    assert fast.terminated == exact.terminated
    np.testing.assert_array_equal(fast.side, exact.side)  # the same trades at the same bars
    # a hold's target is the exposure it holds, which carries the kernel's rounding
    np.testing.assert_allclose(fast.target, exact.target, rtol=0, atol=1e-9)
    scale = float(np.max(exact.equity))
    for name in MONEY:
        np.testing.assert_allclose(
            getattr(fast, name), getattr(exact, name), rtol=0, atol=kernel.EQUITY_RTOL * scale,
            err_msg=name,
        )  # fmt: skip
    np.testing.assert_allclose(fast.reward, exact.reward, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.exposure, exact.exposure, rtol=0, atol=1e-9)
    return float(np.max(np.abs(fast.equity - exact.equity) / exact.equity))


def test_a_rule_policy_at_the_shipped_costs_trades_as_the_mirror_over_100k_bars(
    data: MarketData,
) -> None:
    rng = np.random.default_rng(4)
    levels = np.array([0.0, 0.3, 0.7, 1.0, np.nan])  # NaN holds the position
    targets = np.repeat(rng.choice(levels, size=BARS // 150 + 1), 150)[: data.bars]
    targets = targets + rng.normal(0.0, 0.02, data.bars)  # wanders inside the no-trade band
    policy = TargetPolicy("rule", "strategy", targets, rebalance_band=0.1)
    config = EnvConfig()  # the shipped pool: 10M deep, 30 bps, gas at 20 gwei, 5 USD minimum
    start, end = 48, data.bars - 1
    fast = rollout(data, policy, config, start, end)
    exact = rollout(data, policy, config, start, end, exact=True)
    assert fast.decisions >= 100_000 and not fast.terminated
    assert 300 < fast.swaps < 5_000, "the policy should trade, and not only skip"
    assert _assert_same_run(fast, exact) < kernel.EQUITY_RTOL


def test_a_trained_policy_runs_in_the_kernel_as_on_the_mirror_over_100k_bars(
    data: MarketData, trained: NumpyPolicy
) -> None:
    # a trained policy that trades most bars would be ruined by the shipped costs long before
    # 100,000 bars: the long run uses a cheap deep pool, the shipped costs run until ruin
    cheap = _cheap()
    spec = EnvConfig(lookback_bars=4)
    policy = ModelPolicy("trained", trained, spec)
    fast = rollout(data, policy, cheap, 48, data.bars - 1)
    exact = rollout(data, policy, cheap, 48, data.bars - 1, exact=True)
    assert fast.decisions >= 100_000 and not fast.terminated
    assert fast.swaps > 10_000
    assert _assert_same_run(fast, exact) < kernel.EQUITY_RTOL
    # at the shipped costs, the same ruin at the same bar
    shipped_fast = rollout(data, policy, EnvConfig(), 48, 20_048)
    shipped_exact = rollout(data, policy, EnvConfig(), 48, 20_048, exact=True)
    assert shipped_fast.swaps > 100
    _assert_same_run(shipped_fast, shipped_exact)


def test_a_python_policy_and_the_compiled_network_give_the_same_run(
    data: MarketData, trained: NumpyPolicy
) -> None:
    """A predict callable without a packed network runs bar by bar through `env_bar`."""
    spec = EnvConfig(lookback_bars=4)
    compiled = rollout(data, ModelPolicy("net", trained, spec), spec, 48, 3_048)
    python = rollout(data, ModelPolicy("py", lambda obs: trained(obs), spec), spec, 48, 3_048)
    assert compiled.swaps > 10
    np.testing.assert_array_equal(compiled.side, python.side)
    np.testing.assert_array_equal(compiled.equity, python.equity)


def test_the_kernel_path_is_causal(market: Any, data: MarketData, trained: NumpyPolicy) -> None:
    t = 1_500
    rng = np.random.default_rng(9)
    candles = market.candles.iloc[:3_000].copy()
    later = slice(t + 1, len(candles))
    factor = np.exp(np.cumsum(rng.normal(0.0, 0.05, len(candles) - t - 1)))
    for column in ("open", "high", "low", "close"):
        candles.loc[later, column] = candles[column].to_numpy()[later] * factor
    candles.loc[later, "high"] = candles.loc[later, ["open", "high", "low", "close"]].max(axis=1)
    candles.loc[later, "low"] = candles.loc[later, ["open", "high", "low", "close"]].min(axis=1)
    planted = market.planted[:3_000].copy()
    planted[later] = rng.normal(size=len(candles) - t - 1)
    altered = _data(candles, planted)
    original = data.window(0, 3_000)
    spec = EnvConfig(lookback_bars=4)
    policy = ModelPolicy("trained", trained, spec)
    runs = [rollout(d, policy, _cheap(), 48, 2_999) for d in (original, altered)]
    assert not any(run.terminated for run in runs)
    decided = t - 48 + 1  # decisions at bars 48 .. t
    for name in ("target", "side", "fee_quote", "impact_quote", "gas_quote", "base", "quote"):
        np.testing.assert_array_equal(
            getattr(runs[0], name)[:decided], getattr(runs[1], name)[:decided], err_msg=name
        )
    np.testing.assert_array_equal(runs[0].equity[:decided], runs[1].equity[:decided])
    assert not np.array_equal(runs[0].side[decided:], runs[1].side[decided:]), (
        "the alteration should change later decisions, or the test proves nothing"
    )


def test_network_actions_equal_the_numpy_policy(trained: NumpyPolicy) -> None:
    rng = np.random.default_rng(0)
    observations = rng.uniform(-3.0, 3.0, (10_000, trained.n_inputs)).astype(np.float32)
    np.testing.assert_array_equal(
        trained.network.actions(observations), trained.predict(observations)
    )


def test_compilation_is_cached_and_reported() -> None:
    kernel.ensure_compiled()
    assert kernel.compile_seconds() > 0.0
    assert kernel.ensure_compiled() == 0.0  # once per process
