"""Tests for the planted-oracle test fixture: it finds the synthetic market's planted edge."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agent.config import PlantedSettings, SyntheticSettings
from agent.errors import PluginError
from agent.market.synthetic import PLANTED_SERIES_NAME, SyntheticMarket, forward_ic, generate
from agent.plugins.interface import HIDDEN_ATTR, as_signal, check_metadata
from strategies.testing import PlantedOracle


@pytest.fixture(scope="module")
def market() -> SyntheticMarket:
    settings = SyntheticSettings(
        seed=21, bars=20_000, planted=PlantedSettings(information_coefficient=0.1)
    )
    return generate(settings, "1h")


def _with_planted(market: SyntheticMarket) -> pd.DataFrame:
    candles = market.candles.copy()
    candles.attrs[HIDDEN_ATTR] = {PLANTED_SERIES_NAME: market.planted}
    return candles


def test_signal_predicts_the_next_bar(market: SyntheticMarket) -> None:
    values = PlantedOracle().signal(_with_planted(market))
    as_signal(values, len(market.candles), name=PlantedOracle.name)
    assert forward_ic(values, market.log_returns, horizon=1) > 0.05


def test_signal_is_the_clipped_half_of_the_planted_series(market: SyntheticMarket) -> None:
    values = PlantedOracle().signal(_with_planted(market))
    np.testing.assert_array_equal(values, np.clip(market.planted / 2.0, -1.0, 1.0))
    assert PlantedOracle(divisor=4.0).signal(_with_planted(market))[0] == pytest.approx(
        np.clip(market.planted[0] / 4.0, -1.0, 1.0)
    )


def test_missing_hidden_series_is_a_plugin_error(market: SyntheticMarket) -> None:
    bare = market.candles.copy()
    with pytest.raises(PluginError, match=r"test fixture.*'planted'"):
        PlantedOracle().signal(bare)
    bare.attrs[HIDDEN_ATTR] = {"something-else": market.planted}
    with pytest.raises(PluginError, match="planted"):
        PlantedOracle().signal(bare)


def test_misaligned_hidden_series_is_a_plugin_error(market: SyntheticMarket) -> None:
    candles = market.candles.iloc[:100].copy()
    candles.attrs[HIDDEN_ATTR] = {PLANTED_SERIES_NAME: market.planted}
    with pytest.raises(PluginError, match="align"):
        PlantedOracle().signal(candles)


def test_metadata_declares_the_hidden_input_and_says_it_is_a_fixture() -> None:
    info = check_metadata(PlantedOracle)
    assert info.name == "planted-oracle"
    assert info.hidden_inputs == (PLANTED_SERIES_NAME,)
    assert "TEST FIXTURE" in info.description
    assert "never" in info.description
    with pytest.raises(PluginError, match="unknown parameter"):
        PlantedOracle(window=3)
