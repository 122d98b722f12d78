"""Properties every shipped strategy must have: metadata, warm-up, range, causality, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.config import SyntheticSettings
from agent.errors import PluginError
from agent.market.synthetic import generate
from agent.plugins.interface import NAME_PATTERN, Strategy, as_signal, check_metadata
from strategies import SHIPPED
from strategies.testing import NoiseStrategy, PlantedOracle

EXPECTED_NAMES = {
    "ma-crossover",
    "rsi-reversion",
    "bollinger-reversion",
    "macd",
    "donchian-breakout",
    "ts-momentum",
}
CUT_POINTS = (0, 5, 13, 14, 19, 20, 29, 33, 48, 49, 150, 401, 998)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return generate(SyntheticSettings(seed=5, bars=1_000), "1h").candles


@pytest.fixture(scope="module")
def wild_candles() -> pd.DataFrame:
    """A volatile, trending market: pushes every strategy towards the ends of its range."""
    settings = SyntheticSettings(
        seed=9, bars=3_000, annual_volatility=3.0, regime_drift_annual=5.0, tail_dof=2.5
    )
    return generate(settings, "1h").candles


def test_shipped_names_are_the_six_classics_and_unique() -> None:
    names = [cls.name for cls in SHIPPED]
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED_NAMES


def test_test_fixtures_are_not_shipped() -> None:
    assert PlantedOracle not in SHIPPED
    assert NoiseStrategy not in SHIPPED
    assert all(not cls.hidden_inputs for cls in SHIPPED)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_metadata_is_well_formed(cls: type[Strategy]) -> None:
    info = check_metadata(cls)
    assert NAME_PATTERN.match(info.name)
    assert info.author == "Agora"
    assert info.payout_address is None
    assert len(info.description) > 60
    assert "[-1, 1]" in info.description or "+1" in info.description
    assert info.params
    assert info.hidden_inputs == ()


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_warm_up_is_nan_and_nothing_after_it_is(cls: type[Strategy], candles: pd.DataFrame) -> None:
    values = np.asarray(cls().signal(candles), dtype="float64")
    assert values.shape == (len(candles),)
    assert np.isnan(values[: cls.warmup_bars]).all()
    assert not np.isnan(values[cls.warmup_bars :]).any()
    as_signal(values, len(candles), name=cls.name, warmup_bars=cls.warmup_bars)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_fewer_candles_than_the_warm_up_give_only_nan(cls: type[Strategy]) -> None:
    short = generate(SyntheticSettings(seed=1, bars=10), "1h").candles
    values = np.asarray(cls().signal(short), dtype="float64")
    assert values.shape == (10,)
    assert np.isnan(values).all()


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_signal_stays_in_range_and_uses_it(
    cls: type[Strategy], candles: pd.DataFrame, wild_candles: pd.DataFrame
) -> None:
    for frame in (candles, wild_candles):
        values = np.asarray(cls().signal(frame), dtype="float64")[cls.warmup_bars :]
        assert np.isfinite(values).all()
        assert values.min() >= -1.0
        assert values.max() <= 1.0
        assert values.min() < -0.3 < 0.3 < values.max()


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_signal_at_t_ignores_candles_after_t(cls: type[Strategy], candles: pd.DataFrame) -> None:
    strategy = cls()
    full = np.asarray(strategy.signal(candles), dtype="float64")
    for t in CUT_POINTS:
        prefix = np.asarray(strategy.signal(candles.iloc[: t + 1]), dtype="float64")
        np.testing.assert_allclose(prefix, full[: t + 1], rtol=0.0, atol=1e-12)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_signal_is_deterministic_and_leaves_candles_alone(
    cls: type[Strategy], candles: pd.DataFrame
) -> None:
    before = candles.copy(deep=True)
    first = np.asarray(cls().signal(candles), dtype="float64")
    second = np.asarray(cls().signal(candles), dtype="float64")
    np.testing.assert_array_equal(first, second)
    pd.testing.assert_frame_equal(candles, before)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_signal_does_not_depend_on_the_frame_index(
    cls: type[Strategy], candles: pd.DataFrame
) -> None:
    """A slice keeps its original row labels; the values must follow position, not label."""
    tail = candles.iloc[300:]
    shifted = np.asarray(cls().signal(tail), dtype="float64")
    reset = np.asarray(cls().signal(tail.reset_index(drop=True)), dtype="float64")
    np.testing.assert_array_equal(shifted, reset)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_unknown_parameter_is_refused(cls: type[Strategy]) -> None:
    with pytest.raises(PluginError, match="unknown parameter"):
        cls(no_such_parameter=1)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_overriding_a_parameter_with_its_default_changes_nothing(
    cls: type[Strategy], candles: pd.DataFrame
) -> None:
    default = np.asarray(cls().signal(candles), dtype="float64")
    explicit = np.asarray(cls(**dict(cls.params)).signal(candles), dtype="float64")
    np.testing.assert_array_equal(default, explicit)


@pytest.mark.parametrize("cls", SHIPPED, ids=lambda cls: cls.name)
def test_bool_and_string_parameters_are_refused(cls: type[Strategy]) -> None:
    for key in cls.params:
        for bad in (True, "3", -1):
            with pytest.raises(PluginError, match=key):
                cls(**{key: bad})
