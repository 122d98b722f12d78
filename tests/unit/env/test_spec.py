"""The policy contract: the spec's observation and action mapping are the environment's.

Every comparison goes through a real TradingEnv: the observation the env returns after each
step must equal `PolicySpec.observe` over the same arrays, the target the env executes must
equal `PolicySpec.target_exposure`, for both action kinds, with masks and forced visibility.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from agent.config import Settings, SyntheticSettings
from agent.env.features import FEATURE_NAMES
from agent.env.spec import PolicySpec, exposure, observation_parts
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.errors import ConfigError, ModelError
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies

SPECS = ("ma-crossover", "rsi-reversion", "noise:seed=2")


@pytest.fixture(scope="module")
def data() -> MarketData:
    candles = generate(SyntheticSettings(seed=3, bars=300), "1h").candles
    data, _ = build_market_data(candles, resolve_strategies(SPECS))
    return data


def _actions(spec: PolicySpec, rng: np.random.Generator) -> Any:
    if spec.action == "discrete":
        return int(rng.integers(len(spec.exposure_levels)))
    return rng.uniform(-0.3, 1.3, size=1).astype(np.float32)


@pytest.mark.parametrize("action", ["discrete", "continuous"])
@pytest.mark.parametrize("lookback", [1, 4, 16])
def test_the_spec_observes_and_maps_actions_exactly_as_the_env(
    data: MarketData, action: str, lookback: int
) -> None:
    config = EnvConfig(lookback_bars=lookback, action=action, exposure_levels=(0.0, 0.3, 1.0))  # type: ignore[arg-type]
    env = TradingEnv(data, config)
    spec = env.policy_spec
    assert spec == PolicySpec(SPECS, lookback, action, (0.0, 0.3, 1.0))  # type: ignore[arg-type]
    assert env.observation_space.shape == (spec.observation_size,)
    assert spec.observation_size == lookback * len(FEATURE_NAMES) + 2 * len(SPECS) + 1
    visible = np.array([True, False, True])
    observation, _ = env.reset(options={"start": 60, "end": 200, "strategy_mask": visible})
    features = np.asarray(data.features, np.float32)
    rng = np.random.default_rng(lookback)
    for t in range(60, 200):
        base, quote = env.portfolio
        mine = spec.observe(
            features,
            data.signals,
            data.mask,
            t,
            exposure(base, quote, float(data.close[t])),
            visible,
        )
        assert mine.dtype == np.float32
        np.testing.assert_array_equal(mine, observation)
        act = _actions(spec, rng)
        observation, _, terminated, truncated, info = env.step(act)
        assert info["target_exposure"] == spec.target_exposure(act)
        assert 0.0 <= info["target_exposure"] <= 1.0
        if terminated or truncated:
            break


@pytest.mark.parametrize("lookback", [1, 4, 16])
def test_an_observation_comes_apart_into_what_observe_put_in(
    data: MarketData, lookback: int
) -> None:
    spec = PolicySpec(SPECS, lookback)
    visible = np.array([True, False, True])
    t = 120
    observation = spec.observe(data.features, data.signals, data.mask, t, 0.375, visible)
    parts = observation_parts(observation, len(SPECS))
    np.testing.assert_array_equal(parts.window, data.features[t - lookback + 1 : t + 1])
    shown = data.mask[t] & visible
    np.testing.assert_array_equal(parts.visible, shown)
    np.testing.assert_array_equal(parts.signals, np.where(shown, data.signals[t], 0))
    assert parts.exposure == 0.375
    with pytest.raises(ModelError, match="does not fit 2 strategies"):
        observation_parts(observation, 2)
    broken = observation.copy()
    broken[-2] = 0.5
    with pytest.raises(ModelError, match="not all 0 or 1"):
        observation_parts(broken, len(SPECS))


def test_the_spec_round_trips_through_model_metadata() -> None:
    spec = PolicySpec(("a", "b:x=1"), 8, "continuous", (0.0, 1.0))
    metadata = {"algorithm": "sac", **spec.to_metadata()}
    assert PolicySpec.from_metadata(metadata) == spec
    assert metadata["observation_size"] == 8 * 3 + 2 * 2 + 1
    with pytest.raises(ModelError, match="states 7 observation values"):
        PolicySpec.from_metadata({**metadata, "observation_size": 7})
    with pytest.raises(ModelError, match="incomplete or malformed"):
        PolicySpec.from_metadata({k: v for k, v in metadata.items() if k != "action"})


def test_the_spec_of_the_settings_is_the_envs() -> None:
    settings = Settings()
    spec = PolicySpec.from_settings(settings)
    assert EnvConfig.from_settings(settings).spec(settings.agent.strategies) == spec
    assert spec.lookback_bars == settings.agent.lookback_bars
    with pytest.raises(ConfigError):
        PolicySpec((), 0)
    with pytest.raises(ModelError, match=f"fewer than {spec.lookback_bars} bars"):
        spec.observe(np.zeros((20, 3), np.float32), np.zeros((20, 6)), np.ones((20, 6), bool), 2, 0)


def test_baseline_actions_map_back_to_their_targets() -> None:
    discrete = PolicySpec((), 2, "discrete", (0.0, 0.5, 1.0))
    assert discrete.target_exposure(discrete.action_for(1.0)) == 1.0
    assert discrete.target_exposure(discrete.action_for(0.4)) == 0.5
    continuous = PolicySpec((), 2, "continuous")
    assert continuous.target_exposure(continuous.action_for(0.25)) == 0.25
