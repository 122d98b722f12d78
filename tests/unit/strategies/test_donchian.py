"""Tests for the Donchian breakout against channels worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from agent.errors import PluginError
from strategies.donchian import DonchianBreakout
from tests.unit.strategies.frames import candles

CLOSES = [10.0, 11.0, 12.0, 11.0, 10.0, 12.0, 13.0, 12.0]
HIGHS = [10.5, 11.5, 12.5, 12.0, 10.5, 12.5, 13.5, 12.5]
LOWS = [9.5, 10.5, 11.0, 10.5, 9.0, 11.0, 12.5, 11.5]


def test_signal_matches_hand_computed_channel_positions() -> None:
    values = DonchianBreakout(window=3).signal(candles(CLOSES, HIGHS, LOWS)).to_numpy()
    # Channel of the 3 bars before t: H = max(high), L = min(low); 2 * (c - L) / (H - L) - 1.
    expected = [
        2 * (11 - 9.5) / (12.5 - 9.5) - 1,  # t=3, bars 0-2: 0
        -1.0,  # t=4, bars 1-3: H 12.5, L 10.5, close 10 below L: -1.5 clipped
        2 * (12 - 9.0) / (12.5 - 9.0) - 1,  # t=5, bars 2-4: 5/7
        1.0,  # t=6, bars 3-5: H 12.5 (its own 13.5 excluded), close 13 breaks out: clipped
        2 * (12 - 9.0) / (13.5 - 9.0) - 1,  # t=7, bars 4-6: 1/3
    ]
    assert np.isnan(values[:3]).all()
    assert values[3:] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_the_current_bar_is_not_part_of_its_own_channel() -> None:
    # Prior channel 9-11; bar 3 closes at 12 with a high of 13. Excluding bar 3 it is a
    # breakout (+1); including it the channel would be 9-13 and the signal 2 * 3 / 4 - 1 = 0.5.
    values = DonchianBreakout(window=3).signal(
        candles([10.0, 10.0, 10.0, 12.0], [11.0, 11.0, 11.0, 13.0], [9.0, 9.0, 9.0, 11.0])
    )
    assert values.to_numpy()[3] == 1.0


def test_zero_width_channel_follows_the_breakout_direction() -> None:
    flat = [5.0, 5.0, 5.0]
    strategy = DonchianBreakout(window=3)
    up = strategy.signal(candles([*flat, 6.0], [*flat, 6.0], [*flat, 5.0])).to_numpy()
    down = strategy.signal(candles([*flat, 4.0], [*flat, 5.0], [*flat, 4.0])).to_numpy()
    still = strategy.signal(candles([*flat, 5.0], [*flat, 5.0], [*flat, 5.0])).to_numpy()
    assert (up[3], down[3], still[3]) == (1.0, -1.0, 0.0)


def test_window_override_changes_the_warm_up() -> None:
    values = DonchianBreakout(window=2).signal(candles(CLOSES, HIGHS, LOWS)).to_numpy()
    assert np.isnan(values[:2]).all()
    assert values[2] == pytest.approx(1.0)  # close 12 above H = 11.5 of bars 0-1
    assert values[3] == pytest.approx(2 * (11 - 10.5) / (12.5 - 10.5) - 1)


@pytest.mark.parametrize("window", [0, 21, 2.0])
def test_bad_window_is_refused(window: object) -> None:
    with pytest.raises(PluginError, match="window"):
        DonchianBreakout(window=window)
