"""Tests for Bollinger-band mean reversion against z-scores worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.bollinger import BollingerReversion
from tests.unit.strategies.frames import candles

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0, 13.0, 15.0]


# z of each close over its last 3 closes, population std (ddof=0):
Z = [
    (12 - 11) / math.sqrt(2 / 3),  # [10, 11, 12]: mean 11, var (1 + 0 + 1) / 3
    (11 - 34 / 3) / math.sqrt(2 / 9),  # [11, 12, 11]: mean 34/3, var (1/9 + 4/9 + 1/9) / 3
    (10 - 11) / math.sqrt(2 / 3),  # [12, 11, 10]
    (12 - 11) / math.sqrt(2 / 3),  # [11, 10, 12]
    (13 - 35 / 3) / math.sqrt(14 / 9),  # [10, 12, 13]: var (25/9 + 1/9 + 16/9) / 3
    (15 - 40 / 3) / math.sqrt(14 / 9),  # [12, 13, 15]: var (16/9 + 1/9 + 25/9) / 3
]


def test_signal_matches_hand_computed_z_scores() -> None:
    values = BollingerReversion(window=3, k=2.0).signal(candles(CLOSES)).to_numpy()
    assert np.isnan(values[:2]).all()
    assert values[2:] == pytest.approx([-z / 2 for z in Z], rel=1e-9)


def test_narrower_k_saturates_beyond_the_band() -> None:
    values = BollingerReversion(window=3, k=1.0).signal(candles(CLOSES)).to_numpy()
    expected = [max(-1.0, min(1.0, -z)) for z in Z]  # |z| = 1.22 and 1.34 clip to 1
    assert values[2:] == pytest.approx(expected, rel=1e-9)
    assert values[2] == -1.0
    assert values[-1] == -1.0


def test_flat_prices_are_neutral() -> None:
    values = BollingerReversion(window=3).signal(candles([5.0] * 6)).to_numpy()
    assert (values[2:] == 0.0).all()


@pytest.mark.parametrize("overrides", [{"window": 1}, {"window": 21}, {"k": 0}, {"k": "2"}])
def test_bad_parameters_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PluginError, match="bollinger-reversion"):
        BollingerReversion(**overrides)
