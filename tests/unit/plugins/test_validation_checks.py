"""Validation pieces that need no child process: cut points, altered data, the checks."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agent.config import StrategiesSettings
from agent.plugins.interface import HIDDEN_ATTR, Strategy
from agent.plugins.validation import (
    _originality_check,
    altered_after,
    cut_points,
    reference_candles,
    validate,
)

SETTINGS = StrategiesSettings(reference_bars=600, causality_cut_points=10)


def test_cut_points_spread_from_the_end_of_the_warm_up_to_the_end() -> None:
    cuts = cut_points(1_000, 50, 20)
    assert len(cuts) == 20 and cuts[0] == 50 and cuts[-1] == 998
    assert cuts == sorted(set(cuts))
    assert cut_points(10, 0, 20) == list(range(1, 9))


def test_altered_data_keeps_the_past_and_changes_only_the_future() -> None:
    frame = reference_candles(SETTINGS)
    altered = altered_after(frame, 200, SETTINGS)
    pd.testing.assert_frame_equal(altered.iloc[:201], frame.iloc[:201])
    assert (altered["open_time"] == frame["open_time"]).all()
    assert not np.allclose(altered["close"].iloc[201:], frame["close"].iloc[201:])
    ratio = altered["open"].iloc[201] / altered["close"].iloc[200]
    assert abs(ratio - 1.0) < 0.05  # the replacement continues from bar 200's close
    planted, original = altered.attrs[HIDDEN_ATTR]["planted"], frame.attrs[HIDDEN_ATTR]["planted"]
    assert np.array_equal(planted[:201], original[:201])
    assert not np.allclose(planted[201:], original[201:])
    assert frame.attrs[HIDDEN_ATTR]["planted"] is original  # the reference is not modified


def test_originality_names_the_closest_registered_strategy() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(500) / 4
    noisy = base + rng.standard_normal(500) / 100
    other = rng.standard_normal(500) / 4
    registered = {"original": base, "unrelated": other, "candidate": base}
    check = _originality_check("candidate", noisy, registered, 0.95)
    assert not check.passed
    assert check.message.startswith("its signal correlates 0.99")
    assert check.message.endswith(
        "with registered strategy 'original' (limit 0.95): refused as a copy"
    )
    inverted = _originality_check("candidate", -noisy, {"original": base}, 0.95)
    assert not inverted.passed and "correlates -0.99" in inverted.message
    fresh = _originality_check("candidate", other, {"original": base}, 0.95)
    assert fresh.passed and fresh.message.startswith("highest correlation ")
    constant = _originality_check("candidate", np.zeros(500), {"original": base}, 0.95)
    assert constant.passed


class PeeksTwoBars(Strategy):
    name = "peeks-two-bars"
    warmup_bars = 30

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        future = candles["close"].shift(-2) / candles["close"] - 1.0
        return np.tanh(future * 20).fillna(0.0)


class Causal(Strategy):
    name = "causal"
    warmup_bars = 30

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        past = candles["close"].pct_change(30)
        return np.tanh(past * 20)


def test_causality_names_the_first_bar_that_changed() -> None:
    report = validate(PeeksTwoBars, SETTINGS)
    assert [c.name for c in report.failures] == ["causality"]
    assert report.check("causality").message.startswith(
        "looks ahead: its signal at bar 29 changed when the candles after bar 30 were removed"
    )
    assert validate(Causal, SETTINGS).passed
