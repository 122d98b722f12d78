"""Tests for the noise test fixture: deterministic, causal, uninformative."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.config import SyntheticSettings
from agent.errors import PluginError
from agent.market.synthetic import SyntheticMarket, forward_ic, generate
from agent.plugins.interface import as_signal, check_metadata
from strategies.testing import NoiseStrategy


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    return generate(SyntheticSettings(seed=4, bars=20_000), "1h")


def test_values_are_uniform_in_range(market: SyntheticMarket) -> None:
    values = NoiseStrategy(seed=3).signal(market.candles)
    as_signal(values, len(market.candles), name=NoiseStrategy.name)
    assert abs(values.mean()) < 0.02
    assert values.std() == pytest.approx(1 / np.sqrt(3), rel=0.02)


def test_value_at_t_depends_only_on_seed_and_open_time(market: SyntheticMarket) -> None:
    candles = market.candles
    strategy = NoiseStrategy(seed=3)
    full = strategy.signal(candles)
    for t in (0, 1, 17, 999, 19_998):
        np.testing.assert_array_equal(strategy.signal(candles.iloc[: t + 1]), full[: t + 1])
    np.testing.assert_array_equal(strategy.signal(candles.iloc[500:]), full[500:])
    np.testing.assert_array_equal(NoiseStrategy(seed=3).signal(candles), full)


def test_different_seeds_are_uncorrelated(market: SyntheticMarket) -> None:
    signals = [NoiseStrategy(seed=seed).signal(market.candles) for seed in (0, 1, 2, 12345)]
    correlations = np.corrcoef(np.vstack(signals))
    off_diagonal = correlations[~np.eye(len(signals), dtype=bool)]
    assert np.abs(off_diagonal).max() < 0.05


def test_noise_does_not_predict_returns(market: SyntheticMarket) -> None:
    values = NoiseStrategy(seed=0).signal(market.candles)
    assert abs(forward_ic(values, market.log_returns, horizon=1)) < 0.05


def test_neighbouring_bars_are_uncorrelated(market: SyntheticMarket) -> None:
    values = NoiseStrategy(seed=0).signal(market.candles)
    assert abs(np.corrcoef(values[:-1], values[1:])[0, 1]) < 0.05


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, True])
def test_bad_seed_is_refused(seed: object) -> None:
    with pytest.raises(PluginError, match="seed"):
        NoiseStrategy(seed=seed)


def test_metadata_is_well_formed_and_a_fixture() -> None:
    info = check_metadata(NoiseStrategy)
    assert info.name == "noise"
    assert "TEST FIXTURE" in info.description
    assert isinstance(NoiseStrategy(seed=2**64 - 1).signal(_one_candle()), np.ndarray)


def _one_candle() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "open_time": np.array([1_700_000_000_000], dtype="int64"),
            "open": [1.0],
            "high": [1.0],
            "low": [1.0],
            "close": [1.0],
            "volume": [1.0],
        }
    )
