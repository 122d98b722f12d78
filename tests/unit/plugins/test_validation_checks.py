"""Validation pieces that need no child process: cut points, altered data, the checks."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from agent.config import StrategiesSettings
from agent.plugins.interface import HIDDEN_ATTR, Strategy
from agent.plugins.validation import (
    DataSet,
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


def reference(signal: np.ndarray, registered: dict[str, np.ndarray]) -> list[DataSet]:
    return [DataSet("the reference data", signal, registered)]


def test_originality_refuses_a_noisy_copy_naming_what_explains_it() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal(500) / 4
    noisy = base + rng.standard_normal(500) / 20  # noise of 1/25 the copy's variance: R² 0.96
    other = rng.standard_normal(500) / 4
    registered = {"original": base, "unrelated": other, "candidate": other}
    check = _originality_check("candidate", reference(noisy, registered), 0.8, 3)
    assert not check.passed
    # "candidate" (its own earlier version) is left out, "unrelated" explains too little to name
    assert re.fullmatch(
        r"its signal is explained by the registered strategies \(R² 0\.96[0-9] on the reference "
        r"data, limit 0\.8, lags 0-3\): original \(0\.96[0-9] alone\): refused as a copy",
        check.message,
    ), check.message
    inverted = _originality_check("candidate", reference(-noisy, {"original": base}), 0.8, 3)
    assert not inverted.passed and "(R² 0.96" in inverted.message
    lenient = _originality_check("candidate", reference(noisy, registered), 0.97, 3)
    assert lenient.passed and lenient.message.startswith("highest R² 0.96")


def test_originality_refuses_what_several_strategies_explain_only_together() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.standard_normal(800) for _ in range(3))
    blend = (a + b + c) / 3 + rng.standard_normal(800) / 50
    check = _originality_check("blend", reference(blend, {"a": a, "b": b, "c": c}), 0.8, 0)
    assert not check.passed  # each explains about a third of it, all three nearly all of it
    alone = [float(x) for x in re.findall(r"\(([0-9.]+) alone\)", check.message)]
    assert len(alone) == 3 and all(0.2 < x < 0.5 for x in alone), check.message
    assert "(R² 0.99" in check.message


def test_originality_passes_an_independent_or_constant_signal_naming_the_closest() -> None:
    rng = np.random.default_rng(2)
    base, other = rng.standard_normal(500), rng.standard_normal(500)
    fresh = _originality_check("candidate", reference(other, {"original": base}), 0.8, 3)
    assert fresh.passed
    assert re.fullmatch(
        r"highest R² 0\.0[0-9]{2}, on the reference data, by original \(0\.0[0-9]{2} alone\) "
        r"\(limit 0\.8\)",
        fresh.message,
    ), fresh.message
    constant = _originality_check("candidate", reference(np.zeros(500), {"original": base}), 0.8, 3)
    assert constant.passed
    nothing = _originality_check("candidate", reference(other, {"candidate": base}), 0.8, 3)
    assert nothing.passed and nothing.message == "no registered strategy to compare with"


def test_originality_fails_on_either_data_set_and_names_the_one_it_failed_on() -> None:
    rng = np.random.default_rng(3)
    base, other = rng.standard_normal(600), rng.standard_normal(600)
    data_sets = [
        DataSet("the reference data", other, {"original": base}),  # original there
        DataSet("the stored market synthetic:SYN/USD:1h", base.copy(), {"original": base}),
    ]
    check = _originality_check("candidate", data_sets, 0.8, 3)
    assert not check.passed
    assert check.message.startswith(
        "its signal is explained by the registered strategies (R² 1.000 on the stored market "
        "synthetic:SYN/USD:1h, limit 0.8, lags 0-3): original (1.000 alone)"
    ), check.message


def test_a_shipped_strategy_is_measured_but_not_refused() -> None:
    rng = np.random.default_rng(4)
    base = rng.standard_normal(500)
    check = _originality_check("shipped", reference(base, {"original": base}), 0.8, 3, shipped=True)
    assert check.passed
    assert check.message == (
        "highest R² 1.000, on the reference data, by original (1.000 alone) (limit 0.8): "
        "shipped with Agora, registered before any submission, so not refused"
    )


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
