"""Tests for RSI mean reversion against Wilder averages worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.rsi_reversion import RSIReversion
from tests.unit.strategies.frames import candles

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0, 13.0, 15.0]


def test_signal_matches_hand_computed_rsi() -> None:
    values = RSIReversion(window=3).signal(candles(CLOSES)).to_numpy()
    # Changes from bar 1: +1 +1 -1 -1 +2 +1 +2. With alpha = 1/3, avg = 2/3 * avg + 1/3 * x,
    # started at the first change:
    #   gains  1, 1, 2/3, 4/9, 26/27, 79/81, 320/243
    #   losses 0, 0, 1/3, 5/9, 10/27, 20/81,  40/243
    gain = [2 / 3, 4 / 9, 26 / 27, 79 / 81, 320 / 243]
    loss = [1 / 3, 5 / 9, 10 / 27, 20 / 81, 40 / 243]
    rsi = [100 * g / (g + lo) for g, lo in zip(gain, loss, strict=True)]
    expected = [(50 - r) / 50 for r in rsi]
    # i.e. -1/3, 1/9, -4/9, -59/99, -7/9
    assert np.isnan(values[:3]).all()
    assert values[3:] == pytest.approx(expected, rel=1e-12)
    assert values[3:] == pytest.approx([-1 / 3, 1 / 9, -4 / 9, -59 / 99, -7 / 9], rel=1e-12)


def test_oversold_buys_overbought_sells_and_flat_is_neutral() -> None:
    strategy = RSIReversion(window=3)
    assert strategy.signal(candles([5.0, 4.0, 3.0, 2.0, 1.0])).to_numpy()[3:] == pytest.approx(1)
    assert strategy.signal(candles([1.0, 2.0, 3.0, 4.0, 5.0])).to_numpy()[3:] == pytest.approx(-1)
    assert (strategy.signal(candles([7.0] * 6)).to_numpy()[3:] == 0.0).all()


def test_window_override_changes_the_warm_up() -> None:
    values = RSIReversion(window=2).signal(candles(CLOSES)).to_numpy()
    # alpha = 1/2: gains 1, 1, 1/2; losses 0, 0, 1/2 at bar 3, so RSI 50 there.
    assert np.isnan(values[:2]).all()
    assert values[2] == pytest.approx(-1.0)
    assert values[3] == pytest.approx(0.0, abs=1e-15)


@pytest.mark.parametrize("window", [0, 15, 3.0, None])
def test_bad_window_is_refused(window: object) -> None:
    with pytest.raises(PluginError, match="window"):
        RSIReversion(window=window)
