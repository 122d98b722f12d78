"""How much of one signal lagged others explain: copies, lagged and noisy copies, independent
signals, constant regressors, too few rows, and the fitted projection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.env.neutral import MIN_ROWS, explain, fit, lagged

BARS = 2_000


def smooth(seed: int, bars: int = BARS) -> np.ndarray:
    """An AR(1) signal in [-1, 1], persistent like a strategy's, with a NaN warm-up of 20 bars."""
    rng = np.random.default_rng(seed)
    values = np.zeros(bars)
    for t in range(1, bars):
        values[t] = 0.9 * values[t - 1] + rng.normal(0.0, 0.3)
    signal = np.tanh(values)
    signal[:20] = np.nan
    return signal


def white(seed: int, bars: int = BARS) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, bars)


def delayed(values: np.ndarray, bars: int) -> np.ndarray:
    return np.concatenate([np.full(bars, np.nan), values[:-bars]])


def test_an_exact_copy_is_fully_explained_and_named() -> None:
    original, other = smooth(1), smooth(2)
    explanation = explain(original.copy(), {"original": original, "other": other})
    assert explanation.r2 == pytest.approx(1.0, abs=1e-9)
    assert explanation.alone[0][0] == "original"
    assert explanation.alone[0][1] == pytest.approx(1.0, abs=1e-9)
    assert explanation.explained_by(0.5) == ["original"]
    assert explanation.rows == BARS - 20 - 3  # the warm-up, then three lags


@pytest.mark.parametrize("delay", [1, 2])
def test_a_lagged_copy_is_explained_through_the_lags(delay: int) -> None:
    # white noise: nothing but the lag itself can explain a delayed copy of it
    original = white(3)
    copy = delayed(original, delay)
    assert explain(copy, {"original": original}, lags=3).r2 >= 0.99
    assert explain(copy, {"original": original}, lags=0).r2 < 0.01
    assert explain(copy, {"original": original}, lags=delay - 1).r2 < 0.01
    assert explain(copy, {"original": original}, lags=delay).r2 >= 0.99


def test_a_lagged_copy_of_a_persistent_signal_is_explained_better_with_lags() -> None:
    original = smooth(4)
    copy = delayed(original, 2)
    without = explain(copy, {"original": original}, lags=0).r2
    assert 0.5 < without < 0.95  # a persistent signal resembles its own past, but not fully
    assert explain(copy, {"original": original}, lags=3).r2 >= 0.99


def test_a_scaled_noisy_copy_is_mostly_explained() -> None:
    original = smooth(5)
    noise = np.random.default_rng(6).uniform(-0.1, 0.1, BARS)
    copy = 0.9 * original + noise
    r2 = explain(copy, {"original": original, "other": smooth(7)}).r2
    expected = np.nanvar(0.9 * original) / np.nanvar(copy)  # the share noise did not add
    assert r2 == pytest.approx(expected, abs=0.01)
    assert r2 > 0.9


def test_an_independent_signal_is_not_explained() -> None:
    others = {f"s{seed}": smooth(seed) for seed in range(10, 16)}
    explanation = explain(white(9), others, lags=3)
    assert explanation.r2 < 0.05
    assert explanation.explained_by(0.05) == []


@pytest.mark.filterwarnings("ignore:Degrees of freedom:RuntimeWarning")  # the all-NaN one
def test_constant_and_misaligned_signals_are_left_out() -> None:
    target, noise = smooth(17), white(18)
    explanation = explain(
        target,
        {
            "flat": np.zeros(BARS),
            "all-nan": np.full(BARS, np.nan),
            "short": target[:-1],
            "noise": noise,
        },
    )
    assert [name for name, _ in explanation.alone] == ["noise"]
    assert explanation.r2 < 0.05
    assert explain(target, {"flat": np.zeros(BARS)}) == explain(target, {})
    assert explain(target, {}).r2 == 0.0 and explain(target, {}).rows == 0
    # a constant other than 0 (whose computed spread may be a rounding error) adds nothing
    flat = explain(target, {"flat": np.full(BARS, 0.3), "noise": noise})
    assert flat.r2 == pytest.approx(explanation.r2, abs=1e-9)
    assert dict(flat.alone).get("flat", 0.0) == 0.0


def test_too_few_complete_rows_explain_nothing() -> None:
    original = white(19, 40)
    copy = original.copy()
    copy[: 40 - (MIN_ROWS - 1)] = np.nan  # MIN_ROWS - 1 complete rows
    assert fit(copy, original, lags=0) is None
    explanation = explain(copy, {"original": original}, lags=0)
    assert (explanation.r2, explanation.rows) == (0.0, 0)
    assert explanation.alone == (("original", 0.0),)
    copy[40 - MIN_ROWS] = original[40 - MIN_ROWS]  # one more row: now it fits
    assert explain(copy, {"original": original}, lags=0).r2 == pytest.approx(1.0)


def test_the_projection_predicts_a_linear_combination_of_lagged_regressors() -> None:
    a, b = white(20), white(21)
    target = 0.5 + 2.0 * a - 0.7 * delayed(b, 1) + 0.25 * delayed(a, 2)
    projection = fit(target, np.column_stack([a, b]), lags=2)
    assert projection is not None
    assert projection.r2 == pytest.approx(1.0, abs=1e-12)
    assert projection.rows == BARS - 2
    predicted = projection.predict(np.column_stack([a, b]))
    np.testing.assert_allclose(predicted[2:], target[2:], atol=1e-9)
    # layout of `lagged`: [a, b] at lag 0, then lag 1, then lag 2; weights undo the scaling
    weights = projection.coef / projection.scale
    np.testing.assert_allclose(weights, [2.0, 0.0, 0.0, -0.7, 0.25, 0.0], atol=1e-9)


def test_lagged_shifts_each_column_down_with_nan_before_the_first_bar() -> None:
    columns = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])
    np.testing.assert_array_equal(
        lagged(columns, 1),
        [[1.0, 10.0, np.nan, np.nan], [2.0, 20.0, 1.0, 10.0], [3.0, 30.0, 2.0, 20.0]],
    )


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(0.01, 100.0),
    shift=st.floats(-10.0, 10.0),
    seed=st.integers(0, 1_000),
)
def test_r2_does_not_depend_on_the_scale_or_offset_of_a_regressor(
    scale: float, shift: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    regressor = rng.uniform(-1.0, 1.0, 300)
    target = 0.6 * regressor + rng.uniform(-1.0, 1.0, 300)
    plain = explain(target, {"r": regressor}, lags=1).r2
    moved = explain(target, {"r": regressor * scale + shift}, lags=1).r2
    assert 0.0 <= plain <= 1.0
    assert moved == pytest.approx(plain, abs=1e-9)


def test_lags_longer_than_the_data_and_near_constants_explain_nothing() -> None:
    short = np.array([0.1, 0.5, -0.2])
    assert explain(short, {"other": np.array([0.3, 0.1, 0.2])}, lags=5).r2 == 0.0
    target = np.random.default_rng(1).normal(size=200)
    nearly_constant = np.full(200, 0.3) + np.r_[1e-17, np.zeros(199)]
    result = explain(target, {"flat": nearly_constant, "missing": np.full(200, np.nan)})
    assert result.alone == () and result.r2 == 0.0
