"""The live policy: exactly the environment's observation, a checked model file, cached weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.config import Settings, SyntheticSettings
from agent.env.features import market_features
from agent.env.trading_env import EnvConfig, TradingEnv
from agent.errors import ModelError
from agent.learn.dataset import build_market_data, resolve_strategies
from agent.learn.inference import DenseLayer, NumpyPolicy
from agent.market.synthetic import generate
from agent.plugins.signals import compute_signals
from agent.service.policy import (
    LivePolicy,
    exposure,
    load_live_policy,
    load_policy_cache,
    observation_at,
    policy_cache_dir,
    save_policy_cache,
    verify_model_file,
)
from agent.store import Store
from tests.unit.service.fixtures import STRATEGIES, install_model, service_settings

LOOKBACK = 16


@pytest.fixture(scope="module")
def market() -> tuple[object, list[object], object]:
    candles = generate(SyntheticSettings(bars=420, seed=5), "1h").candles
    strategies = resolve_strategies(list(STRATEGIES), Settings())
    data, _ = build_market_data(candles, strategies)
    return candles, strategies, data


def service_observation(
    candles: object, strategies: list[object], t: int, base: int, quote: int
) -> np.ndarray:
    """What the service computes at bar t: everything from the candles up to t only."""
    prefix = candles.iloc[: t + 1].reset_index(drop=True)  # type: ignore[attr-defined]
    signals = compute_signals(strategies, prefix, key=None)
    price = float(prefix["close"].iloc[t])
    return observation_at(
        market_features(prefix),
        signals.values,
        signals.mask,
        t,
        LOOKBACK,
        exposure(base, quote, price),
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
        mine = service_observation(candles, strategies, t, base, quote)
        assert mine.dtype == np.float32 and mine.shape == observation.shape
        np.testing.assert_array_equal(mine, observation)
        observation, *_ = env.step(t % 5)  # trade, so the exposure is not always 0


def test_target_exposure_maps_actions_as_the_environment() -> None:
    policy = LivePolicy(
        "ab" * 32, Path("m.zip"), None, (), LOOKBACK, "discrete", (0.0, 0.5, 1.0), 0
    )
    assert policy.target_exposure(np.int64(1)) == 0.5
    continuous = LivePolicy("ab" * 32, Path("m.zip"), None, (), LOOKBACK, "continuous", (), 0)
    assert continuous.target_exposure(np.array([1.7])) == 1.0
    assert continuous.target_exposure(np.array([0.25])) == 0.25
    assert policy.record_id == "0x" + "ab" * 32


def test_cached_weights_give_the_same_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    layers = [
        DenseLayer(rng.normal(size=(7, 5)).astype(np.float32), np.ones(5, np.float32), "tanh"),
        DenseLayer(rng.normal(size=(5, 1)).astype(np.float32), np.zeros(1, np.float32), "identity"),
    ]
    policy = NumpyPolicy(layers, "clip", np.zeros(1, np.float32), np.ones(1, np.float32))
    save_policy_cache(policy, tmp_path / "p.npz")
    loaded = load_policy_cache(tmp_path / "p.npz")
    batch = rng.normal(size=(50, 7)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(batch), policy.predict(batch))
    assert loaded.head == "clip" and loaded.n_inputs == 7


def test_a_live_model_loads_from_its_checked_file(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with Store(settings.data.database_path) as store:
        model_id = install_model(store, settings)
        policy = load_live_policy(store, settings, policy_cache_dir(settings))
    assert policy.model_id == model_id and policy.strategies == STRATEGIES
    assert policy.n_inputs == LOOKBACK * 3 + 2 * len(STRATEGIES) + 1
    assert 0.0 <= policy.decide(np.zeros(policy.n_inputs, np.float32)) <= 1.0


def test_no_live_model_is_refused_naming_agora_train(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with (
        Store(settings.data.database_path) as store,
        pytest.raises(ModelError, match="agora train"),
    ):
        load_live_policy(store, settings, policy_cache_dir(settings))


def test_a_corrupt_model_file_is_refused_rather_than_traded_blind(tmp_path: Path) -> None:
    settings = service_settings(tmp_path)
    with Store(settings.data.database_path) as store:
        install_model(store, settings)
        from agent.learn.registry import live_model

        record = live_model(store)
        assert record is not None
        path = Path(record.path)
        path.write_bytes(path.read_bytes()[:-7] + b"garbage")
        with pytest.raises(ModelError, match=r"is corrupt.*not trade blind"):
            load_live_policy(store, settings, policy_cache_dir(settings))
        path.unlink()
        with pytest.raises(ModelError, match="file is missing"):
            verify_model_file(path, record.id)
