"""TradingEnv: gymnasium compliance, timing (nothing after t is visible at t), the reward's
arithmetic, strategy dropout and forced strategy masks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import StrategiesSettings, SyntheticSettings
from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS
from agent.env.features import FEATURE_NAMES
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies

BARS = 400
STRATEGY_SPECS = ("ma-crossover", "ts-momentum", "noise:seed=1", "planted-oracle")
LOOKBACK = 4
N_FEATURES = len(FEATURE_NAMES)


@pytest.fixture(scope="module")
def market() -> Any:
    return generate(SyntheticSettings(seed=5, bars=BARS), "1h")


def _data(candles: pd.DataFrame, planted: np.ndarray) -> MarketData:
    strategies = resolve_strategies(STRATEGY_SPECS)
    fixtures = StrategiesSettings(fixtures=["planted-oracle"])
    data, reasons = build_market_data(
        candles, strategies, hidden={"planted": planted}, settings=fixtures
    )
    assert not reasons
    return data


@pytest.fixture(scope="module")
def data(market: Any) -> MarketData:
    return _data(market.candles, market.planted)


def _config(**changes: Any) -> EnvConfig:
    base = {"lookback_bars": LOOKBACK, "episode_bars": 64, "exposure_levels": (0.0, 0.5, 1.0)}
    return EnvConfig(**{**base, **changes})


def _policy(obs: np.ndarray, n_actions: int) -> int:
    """A deterministic policy that depends on every value of the observation."""
    return int(abs(hash(obs.tobytes())) % n_actions)


# --- gymnasium compliance ---------------------------------------------------------------------
@pytest.mark.parametrize("action", ["discrete", "continuous"])
def test_env_passes_gymnasium_check_env(data: MarketData, action: str) -> None:
    env = TradingEnv(data, _config(action=action))
    check_env(env, skip_render_check=True)


def test_observation_layout_is_features_signals_mask_exposure(data: MarketData) -> None:
    env = TradingEnv(data, _config())
    obs, _ = env.reset(options={"start": 100, "end": 110})
    n = data.n_strategies
    assert obs.shape == (LOOKBACK * N_FEATURES + 2 * n + 1,)
    np.testing.assert_array_equal(obs[: LOOKBACK * N_FEATURES], data.features[97:101].ravel())
    signals = obs[LOOKBACK * N_FEATURES : LOOKBACK * N_FEATURES + n]
    np.testing.assert_array_equal(signals, np.where(data.mask[100], data.signals[100], 0.0))
    assert obs[-1] == 0.0  # starts all in quote


# --- timing: nothing after t is visible at t --------------------------------------------------
def _altered_after(candles: pd.DataFrame, planted: np.ndarray, t: int, seed: int) -> Any:
    """Return candles and planted series equal up to bar t and different after it."""
    rng = np.random.default_rng(seed)
    altered = candles.copy()
    later = slice(t + 1, len(candles))
    factor = np.exp(np.cumsum(rng.normal(0.0, 0.05, len(candles) - t - 1)))
    for column in ("open", "high", "low", "close"):
        altered.loc[later, column] = candles[column].to_numpy()[later] * factor
    altered.loc[later, "high"] = altered.loc[later, ["open", "high", "low", "close"]].max(axis=1)
    altered.loc[later, "low"] = altered.loc[later, ["open", "high", "low", "close"]].min(axis=1)
    altered.loc[later, "volume"] = rng.uniform(1.0, 5_000.0, len(candles) - t - 1)
    new_planted = planted.copy()
    new_planted[later] = rng.normal(size=len(candles) - t - 1)
    return altered, new_planted


def _run_until(env: TradingEnv, start: int, t: int) -> tuple[list[np.ndarray], list[Any], list]:
    n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
    obs, info = env.reset(options={"start": start, "end": env.data.bars - 1})
    observations, actions, infos = [obs], [], [info]
    for _ in range(start, t + 1):
        action = _policy(obs, n_actions)
        obs, reward, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated)
        observations.append(obs)
        actions.append(action)
        infos.append((reward, info))
    return observations, actions, infos


@settings(max_examples=12, deadline=None)
@given(t=st.integers(min_value=60, max_value=BARS - 10), seed=st.integers(0, 2**16))
def test_altering_candles_after_t_changes_nothing_shown_or_done_at_t(
    market: Any, data: MarketData, t: int, seed: int
) -> None:
    candles, planted = _altered_after(market.candles, market.planted, t, seed)
    other = _data(candles, planted)
    assert not np.array_equal(other.close[t + 1 :], data.close[t + 1 :])
    start = 50
    obs_a, actions_a, infos_a = _run_until(TradingEnv(data, _config()), start, t)
    obs_b, actions_b, infos_b = _run_until(TradingEnv(other, _config()), start, t)
    # every observation up to and including the one the decision at t is taken on
    for a, b in zip(obs_a[:-1], obs_b[:-1], strict=True):
        np.testing.assert_array_equal(a, b)
    # every decision up to and including t
    assert actions_a == actions_b
    # steps before t: results are measured at bars <= t, so they are identical too
    assert infos_a[:-1] == infos_b[:-1]
    # step t: the trade itself (executed at t's close) is identical; only its outcome, valued
    # at the close of t + 1, may differ
    (_, last_a), (_, last_b) = infos_a[-1], infos_b[-1]
    trade_keys = ("bar", "target_exposure", "exposure_before", "side", "fee_quote")
    trade_keys += ("impact_quote", "gas_quote")
    assert {k: last_a[k] for k in trade_keys} == {k: last_b[k] for k in trade_keys}


def test_features_and_signals_at_t_ignore_later_candles(market: Any, data: MarketData) -> None:
    t = 200
    candles, planted = _altered_after(market.candles, market.planted, t, seed=3)
    other = _data(candles, planted)
    np.testing.assert_array_equal(other.features[: t + 1], data.features[: t + 1])
    np.testing.assert_array_equal(other.signals[: t + 1], data.signals[: t + 1])
    np.testing.assert_array_equal(other.mask[: t + 1], data.mask[: t + 1])


# --- the reward -------------------------------------------------------------------------------
def _value(env: TradingEnv, price: float) -> float:
    base, quote = env.portfolio
    return base / 10**BASE_DECIMALS * price + quote / 10**QUOTE_DECIMALS


@pytest.mark.parametrize("penalty", [0.0, 0.002])
def test_reward_equals_net_value_change_from_balances_and_prices(
    data: MarketData, penalty: float
) -> None:
    env = TradingEnv(data, _config(turnover_penalty=penalty))
    start, end = 60, 260
    env.reset(options={"start": start, "end": end})
    rng = np.random.default_rng(0)
    total_costs = 0.0
    for t in range(start, end):
        value_before = _value(env, data.close[t])
        base_before = env.portfolio[0]
        exposure_before = base_before / 10**BASE_DECIMALS * data.close[t] / value_before
        action = int(rng.integers(0, 3))
        _, reward, _, truncated, info = env.step(action)
        value_after = _value(env, data.close[t + 1])
        traded = info["side"] != "none"
        turnover = abs(env.target_exposure(action) - exposure_before) if traded else 0.0
        expected = math.log(value_after / value_before) - penalty * turnover
        assert reward == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert info["value_quote"] == pytest.approx(value_after, rel=1e-12)
        # what a trade loses at its own price is exactly its fee, impact and gas
        lost = value_before - _value(env, data.close[t])
        costs = info["fee_quote"] + info["impact_quote"] + info["gas_quote"]
        assert lost == pytest.approx(costs, abs=1e-6)
        total_costs += costs
        assert truncated == (t == end - 1)
    assert total_costs > 0


def test_first_trade_pays_fee_gas_and_impact(data: MarketData) -> None:
    env = TradingEnv(data, _config())
    env.reset(options={"start": 80, "end": 90})
    _, _, _, _, info = env.step(2)  # to full exposure
    assert info["side"] == "buy"
    fee_bps = env.config.pool.fee_bps
    assert info["fee_quote"] == pytest.approx(10_000 * fee_bps / 10_000, rel=1e-3)
    assert info["gas_quote"] > 0
    assert info["impact_quote"] > 0


# --- strategy dropout and forced masks --------------------------------------------------------
def _visible(obs: np.ndarray, n: int) -> np.ndarray:
    offset = LOOKBACK * N_FEATURES + n
    return obs[offset : offset + n].astype(bool)


def test_dropout_hides_strategies_for_a_whole_episode_at_the_configured_rate(
    data: MarketData,
) -> None:
    n = data.n_strategies
    env = TradingEnv(data, _config(strategy_dropout=0.5))
    env.reset(seed=123)
    hidden = 0
    episodes = 200
    for _ in range(episodes):
        obs, _ = env.reset()
        visible = _visible(obs, n)
        hidden += int((~visible).sum())
        for _ in range(5):
            obs, *_ = env.step(0)
            assert not np.any(_visible(obs, n) & ~visible)  # hidden stays hidden
            signals = obs[LOOKBACK * N_FEATURES : LOOKBACK * N_FEATURES + n]
            assert np.all(signals[~visible] == 0.0)
    rate = hidden / (episodes * n)
    assert 0.4 < rate < 0.6


def test_no_dropout_shows_every_available_strategy(data: MarketData) -> None:
    env = TradingEnv(data, _config())
    env.reset(seed=1)
    for _ in range(20):
        obs, info = env.reset()
        np.testing.assert_array_equal(_visible(obs, data.n_strategies), data.mask[info["bar"]])


def test_forced_strategy_mask_overrides_dropout(data: MarketData) -> None:
    n = data.n_strategies
    forced = np.array([True, False, True, False])
    env = TradingEnv(data, _config(strategy_dropout=0.9))
    for seed in range(10):
        obs, info = env.reset(seed=seed, options={"strategy_mask": forced})
        expected = forced & data.mask[info["bar"]]
        np.testing.assert_array_equal(_visible(obs, n), expected)
        signals = obs[LOOKBACK * N_FEATURES : LOOKBACK * N_FEATURES + n]
        assert np.all(signals[~forced] == 0.0)


def test_forced_strategy_mask_of_wrong_length_is_refused(data: MarketData) -> None:
    env = TradingEnv(data, _config())
    with pytest.raises(ValueError, match="one boolean per strategy"):
        env.reset(options={"strategy_mask": [True]})


def test_fixed_window_truncates_at_its_end_and_random_windows_stay_inside(
    data: MarketData,
) -> None:
    env = TradingEnv(data, _config(episode_bars=30))
    env.reset(seed=7)
    for _ in range(20):
        _, info = env.reset()
        start = info["bar"]
        assert env.config.first_bar <= start <= data.bars - 31
        steps = 0
        done = False
        while not done:
            _, _, terminated, truncated, _ = env.step(1)
            done = terminated or truncated
            steps += 1
        assert truncated and not terminated and steps == 30
