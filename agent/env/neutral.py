"""How much of one signal other signals explain: a lagged linear regression and its residual.

Both ends of the contributor economy use it. At submission, a new strategy is refused when the
registered signals explain too much of its signal (`explain`: R² of the new signal regressed on
every registered signal and its recent lags), so a copy, a rescaled or noisy copy, a lagged copy
or a small parameter tweak is caught even when no single pairwise correlation is high. In a
reward epoch, each later-registered strategy is credited only for its residual: what the
earlier strategies (and their lags) cannot predict (`Projection`).

Signals are float arrays with NaN where a strategy has no value (its warm-up, a masked bar). A
lag of k bars at bar t is the value at bar t - k. Only rows where the target and every lagged
regressor are finite are fitted; regressors are standardised first, so the fit does not depend
on a signal's scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

DEFAULT_LAGS = 3
"""Lags 0..3 of each regressor: a copy delayed by up to three bars is explained."""
MIN_ROWS = 30
"""Fewest complete rows for a fit to count (fewer: nothing is explained)."""


def lagged(columns: np.ndarray, lags: int) -> np.ndarray:
    """Return [bars, k * (lags + 1)]: each column at lags 0..lags (NaN before the first bar)."""
    columns = np.asarray(columns, dtype="float64")
    if columns.ndim == 1:
        columns = columns[:, None]
    bars, k = columns.shape
    out = np.full((bars, k * (lags + 1)), np.nan)
    for lag in range(min(lags, bars - 1) + 1):  # a lag longer than the data stays NaN
        out[lag:, lag * k : (lag + 1) * k] = columns[: bars - lag]
    return out


@dataclass(frozen=True)
class Projection:
    """A fitted linear prediction of one signal from lagged regressors.

    Attributes:
        intercept: the constant term.
        coef: one weight per lagged regressor column (`lagged` layout).
        mean: the regressors' means used to standardise them.
        scale: their standard deviations (1 where a column is constant).
        lags: the lags the fit used.
        r2: the share of the target's variance explained on the fitted rows.
        rows: rows fitted.
    """

    intercept: float
    coef: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    lags: int
    r2: float
    rows: int

    def predict(self, regressors: np.ndarray) -> np.ndarray:
        """Return the prediction at every bar of `regressors` [bars, k] (NaN where undefined)."""
        design = lagged(regressors, self.lags)
        # a missing lagged value (the first bars, a warm-up) counts as its mean: no information
        design = np.where(np.isfinite(design), design, self.mean)
        return self.intercept + ((design - self.mean) / self.scale) @ self.coef


def fit(target: np.ndarray, regressors: np.ndarray, lags: int = DEFAULT_LAGS) -> Projection | None:
    """Fit `target` on the regressors [bars, k] and their lags; None with too few rows.

    Ordinary least squares with an intercept on the rows where everything is finite.
    """
    target = np.asarray(target, dtype="float64")
    design = lagged(regressors, lags)
    rows = np.isfinite(target) & np.isfinite(design).all(axis=1)
    count = int(rows.sum())
    if count < max(MIN_ROWS, design.shape[1] + 2):
        return None
    x, y = design[rows], target[rows]
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = (x - mean) / scale
    centred = y - y.mean()
    coef, *_ = np.linalg.lstsq(z, centred, rcond=None)
    residual = centred - z @ coef
    total = float(centred @ centred)
    r2 = 0.0 if total <= 0.0 else max(0.0, 1.0 - float(residual @ residual) / total)
    return Projection(float(y.mean()), coef, mean, scale, lags, r2, count)


@dataclass(frozen=True)
class Explanation:
    """How well a set of signals explains one signal.

    Attributes:
        r2: R² of the signal on every other signal and its lags together (0 if none fits).
        alone: each other signal's own R² (with its lags), largest first.
        rows: rows of the joint fit.
    """

    r2: float
    alone: tuple[tuple[str, float], ...]
    rows: int

    def explained_by(self, floor: float = 0.1) -> list[str]:
        """Return the signals that explain at least `floor` of it on their own, largest first."""
        return [name for name, r2 in self.alone if r2 >= floor]


def explain(
    target: np.ndarray, others: Mapping[str, np.ndarray], lags: int = DEFAULT_LAGS
) -> Explanation:
    """Return how much of `target` the `others` (NaN where missing) explain, jointly and alone.

    Signals shorter or longer than `target`, or constant ones, are left out.
    """
    target = np.asarray(target, dtype="float64")
    usable = {
        name: np.asarray(values, dtype="float64")
        for name, values in others.items()
        if len(values) == len(target) and _varies(np.asarray(values, dtype="float64"))
    }
    if not usable:
        return Explanation(0.0, (), 0)
    joint = fit(target, np.column_stack(list(usable.values())), lags)
    alone = []
    for name, values in usable.items():
        single = fit(target, values, lags)
        alone.append((name, 0.0 if single is None else single.r2))
    alone.sort(key=lambda item: -item[1])
    if joint is None:
        return Explanation(max((r2 for _, r2 in alone), default=0.0), tuple(alone), 0)
    return Explanation(max(joint.r2, alone[0][1]), tuple(alone), joint.rows)


def _varies(values: np.ndarray) -> bool:
    """Whether a signal takes more than one value where it has one (NaN: none)."""
    finite = values[np.isfinite(values)]
    return finite.size > 1 and float(finite.max() - finite.min()) > 1e-12 * max(
        1.0, float(np.abs(finite).max())
    )
