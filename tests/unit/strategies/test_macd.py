"""Tests for the MACD histogram against EMAs worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.macd import MACD
from tests.unit.strategies.frames import candles

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0]


def test_signal_matches_hand_computed_histogram() -> None:
    values = MACD(fast=2, slow=3, signal=2, scale=10.0).signal(candles(CLOSES)).to_numpy()
    # ema += alpha * (x - ema), started at the first close; alpha = 2 / (span + 1).
    # fast (alpha 2/3): 10, 32/3, 104/9, 302/27, 842/81, 2786/243
    # slow (alpha 1/2): 10, 21/2, 45/4,  89/8,   169/16, 361/32
    # macd = fast - slow: 0, 1/6, 11/36, 13/216, -217/1296, 1429/7776
    # line (alpha 2/3):  0, 1/9, 13/54, 13/108, -139/1944, 1151/11664
    # histogram from bar 3 (warm-up 3 + 2 - 2 = 3): -13/216, -373/3888, 1985/23328
    expected = [
        math.tanh(10 * (-13 / 216) / 11),
        math.tanh(10 * (-373 / 3888) / 10),
        math.tanh(10 * (1985 / 23328) / 12),
    ]
    assert np.isnan(values[:3]).all()
    assert values[3:] == pytest.approx(expected, rel=1e-12)


def test_accelerating_rise_is_positive() -> None:
    closes = [100.0 * 1.01 ** (i * i / 10) for i in range(60)]
    values = MACD().signal(candles(closes)).to_numpy()
    assert (values[MACD.warmup_bars :] > 0).all()


def test_scale_override_sharpens_the_signal() -> None:
    frame = candles(CLOSES)
    soft = MACD(fast=2, slow=3, signal=2, scale=1.0).signal(frame).to_numpy()
    assert soft[3] == pytest.approx(math.tanh(-13 / 216 / 11), rel=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [{"fast": 26, "slow": 12}, {"signal": 0}, {"slow": 30}, {"signal": 10}, {"scale": -1.0}],
)
def test_bad_parameters_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PluginError, match="macd"):
        MACD(**overrides)
