"""Tests for time-series momentum against volatility-scaled returns worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.momentum import TSMomentum
from tests.unit.strategies.frames import candles

RETURNS = [0.01, -0.02, 0.03, 0.01, -0.01, 0.02, 0.0]
"""One-bar log returns of bars 1..7."""


def _closes(returns: list[float]) -> list[float]:
    closes = [100.0]
    for r in returns:
        closes.append(closes[-1] * math.exp(r))
    return closes


def _sample_std(a: float, b: float, c: float) -> float:
    mean = (a + b + c) / 3
    return math.sqrt(((a - mean) ** 2 + (b - mean) ** 2 + (c - mean) ** 2) / 2)


def test_signal_matches_hand_computed_scores() -> None:
    values = TSMomentum(lookback=2, vol_window=3).signal(candles(_closes(RETURNS))).to_numpy()
    r1, r2, r3, r4, r5, r6, r7 = RETURNS
    # score_t = (r_{t-1} + r_t) / (std(r_{t-2}, r_{t-1}, r_t) * sqrt(2)); signal = tanh(score)
    expected = [
        math.tanh((r2 + r3) / (_sample_std(r1, r2, r3) * math.sqrt(2))),
        math.tanh((r3 + r4) / (_sample_std(r2, r3, r4) * math.sqrt(2))),
        math.tanh((r4 + r5) / (_sample_std(r3, r4, r5) * math.sqrt(2))),
        math.tanh((r5 + r6) / (_sample_std(r4, r5, r6) * math.sqrt(2))),
        math.tanh((r6 + r7) / (_sample_std(r5, r6, r7) * math.sqrt(2))),
    ]
    assert expected[0] == pytest.approx(math.tanh(0.01 / (0.0251661 * math.sqrt(2))), rel=1e-5)
    assert np.isnan(values[:3]).all()
    assert values[3:] == pytest.approx(expected, rel=1e-9)


def test_scale_override_softens_the_signal() -> None:
    r1, r2, r3 = RETURNS[:3]
    values = TSMomentum(lookback=2, vol_window=3, scale=2.0).signal(candles(_closes(RETURNS)))
    score = (r2 + r3) / (_sample_std(r1, r2, r3) * math.sqrt(2))
    assert values.to_numpy()[3] == pytest.approx(math.tanh(score / 2), rel=1e-9)


def test_unchanged_prices_are_neutral() -> None:
    values = TSMomentum(lookback=2, vol_window=3).signal(candles([50.0] * 6)).to_numpy()
    assert (values[3:] == 0.0).all()


@pytest.mark.parametrize(
    "overrides", [{"lookback": 0}, {"vol_window": 1}, {"lookback": 49}, {"scale": 0}]
)
def test_bad_parameters_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(PluginError, match="ts-momentum"):
        TSMomentum(**overrides)
