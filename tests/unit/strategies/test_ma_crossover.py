"""Tests for the moving-average crossover against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.ma_crossover import MACrossover
from tests.unit.strategies.frames import candles

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0, 13.0, 15.0]


def test_signal_matches_hand_computed_averages() -> None:
    values = MACrossover(fast=2, slow=3, scale=10.0).signal(candles(CLOSES)).to_numpy()
    # fast = mean of the last 2 closes, slow = mean of the last 3; signal = tanh(10 * (f/s - 1))
    expected = [
        math.tanh(10 * ((11 + 12) / 2 / ((10 + 11 + 12) / 3) - 1)),  # 11.5 / 11
        math.tanh(10 * ((12 + 11) / 2 / ((11 + 12 + 11) / 3) - 1)),  # 11.5 / (34/3)
        math.tanh(10 * ((11 + 10) / 2 / ((12 + 11 + 10) / 3) - 1)),  # 10.5 / 11
        0.0,  # fast (10 + 12) / 2 = 11 equals slow (11 + 10 + 12) / 3 = 11
        math.tanh(10 * ((12 + 13) / 2 / ((10 + 12 + 13) / 3) - 1)),  # 12.5 / (35/3)
        math.tanh(10 * ((13 + 15) / 2 / ((12 + 13 + 15) / 3) - 1)),  # 14 / (40/3)
    ]
    assert np.isnan(values[:2]).all()
    assert values[2:] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_fast_above_slow_is_positive_and_below_is_negative() -> None:
    rising = MACrossover(fast=2, slow=3).signal(candles([1.0, 2.0, 3.0, 4.0])).to_numpy()
    falling = MACrossover(fast=2, slow=3).signal(candles([4.0, 3.0, 2.0, 1.0])).to_numpy()
    assert (rising[2:] > 0).all()
    assert (falling[2:] < 0).all()


def test_scale_override_sharpens_the_signal() -> None:
    frame = candles(CLOSES)
    soft = MACrossover(fast=2, slow=3, scale=1.0).signal(frame).to_numpy()[2:]
    sharp = MACrossover(fast=2, slow=3, scale=100.0).signal(frame).to_numpy()[2:]
    assert (np.abs(sharp) >= np.abs(soft)).all()
    assert soft[0] == pytest.approx(math.tanh(11.5 / 11 - 1))


@pytest.mark.parametrize(
    "overrides",
    [{"fast": 30, "slow": 10}, {"fast": 0}, {"slow": 31}, {"scale": 0.0}, {"fast": 2.5}],
)
def test_bad_parameters_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PluginError, match="ma-crossover"):
        MACrossover(**overrides)
