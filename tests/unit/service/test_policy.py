"""The service observes exactly what the environment shows, from the candles up to each bar."""

from __future__ import annotations

import numpy as np
import pytest

from agent.config import Settings, SyntheticSettings
from agent.env.spec import exposure
from agent.env.trading_env import EnvConfig, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies
from tests.unit.service.fixtures import STRATEGIES

LOOKBACK = 16


@pytest.fixture(scope="module")
def market() -> tuple[object, list[object], object]:
    candles = generate(SyntheticSettings(bars=420, seed=5), "1h").candles
    strategies = resolve_strategies(list(STRATEGIES), Settings())
    data, _ = build_market_data(candles, strategies)
    return candles, strategies, data


def service_observation(
    env: TradingEnv, candles: object, strategies: list[object], t: int, base: int, quote: int
) -> np.ndarray:
    """What the service computes at bar t (`ServiceRuntime.decide_bar`): candles up to t only."""
    prefix = candles.iloc[: t + 1].reset_index(drop=True)  # type: ignore[attr-defined]
    data, _ = build_market_data(prefix, strategies)
    price = float(prefix["close"].iloc[t])
    return env.policy_spec.observe(
        data.features, data.signals, data.mask, t, exposure(base, quote, price)
    )


@pytest.mark.parametrize("start", [60, 211, 399])
def test_the_observation_is_the_environments_bit_for_bit(
    market: tuple[object, list[object], object], start: int
) -> None:
    candles, strategies, data = market
    env = TradingEnv(data, EnvConfig(lookback_bars=LOOKBACK, first_bar=48))  # type: ignore[arg-type]
    observation, _ = env.reset(options={"start": start, "end": start + 6})
    for t in range(start, start + 4):
        base, quote = env.portfolio
        mine = service_observation(env, candles, strategies, t, base, quote)
        assert mine.dtype == np.float32 and mine.shape == observation.shape
        np.testing.assert_array_equal(mine, observation)
        observation, *_ = env.step(t % 5)  # trade, so the exposure is not always 0
