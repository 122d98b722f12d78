"""What a signal says about the market before it is submitted: IC, consistency, decay, overlap.

Pure functions over numpy arrays (no I/O), for `agora strategies evaluate`. Every figure is
defined in docs/contributing-strategies.md ("Evaluate it"):

- the information coefficient (IC) at horizon h: Spearman's rank correlation of the signal at
  bar t with the forward log return log(close[t+h] / close[t]), over the bars where both exist;
  its standard error by a circular block bootstrap of the per-bar terms of that correlation
  (`agent.rewards.attribution.block_bootstrap_se`, the one rewards use), and its t-stat
  IC / SE, significant when above `rewards.significance` (as payouts are);
- per-window consistency (Numerai's eras): the IC at h = 1 in consecutive windows of bars, and
  the share of windows whose IC has the overall IC's sign;
- decay (the IC by horizon and its half-life), turnover and autocorrelation;
- overlap with the registered strategies: `agent.env.neutral.explain`, the measure the
  originality check applies at submission.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from agent.env.neutral import explain
from agent.rewards.attribution import block_bootstrap_se

HORIZONS_BARS = (1, 4, 24)
"""Horizons of the forward return the IC is measured at."""
WINDOW_BARS = 500
"""Bars per consistency window (Numerai's era)."""
MIN_PAIRS = 30
"""Fewest (signal, return) pairs for an IC to be measured."""
AUTOCORRELATION_LAGS = (1, 24)
EXPLAINER_FLOOR = 0.1
"""Smallest R² of its own for a registered strategy to be named (as the originality check)."""


@dataclass(frozen=True)
class InformationCoefficient:
    """The IC at one horizon, with its bootstrap standard error and t-stat."""

    horizon_bars: int
    ic: float | None
    se: float | None
    t_stat: float | None
    significant: bool
    pairs: int


@dataclass(frozen=True)
class WindowIC:
    """The IC at h = 1 within one window of bars [first_bar, last_bar]."""

    first_bar: int
    last_bar: int
    ic: float | None
    pairs: int


@dataclass(frozen=True)
class Overlap:
    """How much of the signal the registered strategies explain (the originality measure).

    Attributes:
        r2: R² on every registered signal and its lags together (0 when none fits).
        alone: each registered strategy's own R² (with its lags), largest first.
        explained_by: those whose own R² is at least `EXPLAINER_FLOOR`.
        threshold: `strategies.originality_max_r2`; at or above it, submission is refused.
        lags: `strategies.originality_lags`.
    """

    r2: float
    alone: tuple[tuple[str, float], ...]
    explained_by: tuple[str, ...]
    threshold: float
    lags: int

    @property
    def above_threshold(self) -> bool:
        return self.r2 >= self.threshold


@dataclass(frozen=True)
class SignalDiagnostics:
    """Every figure of one signal on one market (see the module docstring)."""

    bars: int
    ic: tuple[InformationCoefficient, ...]
    windows: tuple[WindowIC, ...]
    window_bars: int
    consistency: float | None
    half_life_bars: float | None
    turnover: float | None
    autocorrelation: Mapping[int, float | None]
    significance: float

    def at(self, horizon_bars: int) -> InformationCoefficient:
        """Return the IC at `horizon_bars`."""
        return next(ic for ic in self.ic if ic.horizon_bars == horizon_bars)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bars": self.bars,
            "significance": self.significance,
            "ic": [asdict(ic) for ic in self.ic],
            "window_bars": self.window_bars,
            "windows": [asdict(w) for w in self.windows],
            "consistency": self.consistency,
            "half_life_bars": self.half_life_bars,
            "turnover": self.turnover,
            "autocorrelation": {str(k): v for k, v in self.autocorrelation.items()},
        }


def forward_log_returns(close: np.ndarray, horizon_bars: int) -> np.ndarray:
    """Return log(close[t+h] / close[t]) at every bar t (NaN for the last h bars)."""
    log_close = np.log(np.asarray(close, dtype="float64"))
    out = np.full(log_close.shape, np.nan)
    if horizon_bars < len(log_close):
        out[: len(log_close) - horizon_bars] = log_close[horizon_bars:] - log_close[:-horizon_bars]
    return out


def ranks(values: np.ndarray) -> np.ndarray:
    """Return the 0-based ranks of `values`, ties sharing their average rank."""
    values = np.asarray(values, dtype="float64")
    order = np.argsort(values, kind="mergesort")
    _, first, inverse, counts = np.unique(
        values[order], return_index=True, return_inverse=True, return_counts=True
    )
    out = np.empty(values.shape)
    out[order] = (first + (counts - 1) / 2.0)[inverse]
    return out


def _standardised_ranks(values: np.ndarray) -> np.ndarray | None:
    r = ranks(values)
    spread = r.std()
    return None if spread <= 0.0 else (r - r.mean()) / spread


def _ic_terms(signal: np.ndarray, returns: np.ndarray) -> np.ndarray | None:
    """Return the per-bar terms whose sum is the Spearman IC (None: too few pairs or constant)."""
    rows = np.isfinite(signal) & np.isfinite(returns)
    if int(rows.sum()) < MIN_PAIRS:
        return None
    zs, zr = _standardised_ranks(signal[rows]), _standardised_ranks(returns[rows])
    if zs is None or zr is None:
        return None
    return np.asarray(zs * zr / rows.sum())


def spearman_ic(signal: np.ndarray, returns: np.ndarray) -> float | None:
    """Return Spearman's rank correlation over the bars where both are finite (None: too few)."""
    terms = _ic_terms(np.asarray(signal, "float64"), np.asarray(returns, "float64"))
    return None if terms is None else float(terms.sum())


def information_coefficient(
    signal: np.ndarray,
    close: np.ndarray,
    horizon_bars: int,
    *,
    significance: float,
    bootstrap_samples: int,
    bootstrap_block_bars: int,
    seed: int = 0,
) -> InformationCoefficient:
    """Return the IC at `horizon_bars`, its block-bootstrap SE, t-stat and significance.

    The IC is the sum of the per-bar terms z(rank signal) * z(rank return) / n, so its SE is
    that of a sum, by the circular block bootstrap rewards use; the block is at least the
    horizon, since forward returns over h bars overlap.
    """
    signal = np.asarray(signal, dtype="float64")
    returns = forward_log_returns(close, horizon_bars)
    rows = int((np.isfinite(signal) & np.isfinite(returns)).sum())
    terms = _ic_terms(signal, returns)
    if terms is None:
        return InformationCoefficient(horizon_bars, None, None, None, False, rows)
    ic = float(terms.sum())
    block = max(bootstrap_block_bars, horizon_bars)
    se = float(block_bootstrap_se(terms, block=block, samples=bootstrap_samples, seed=seed)[0])
    t_stat = ic / se if se > 0.0 else None
    significant = t_stat is not None and abs(t_stat) > significance
    return InformationCoefficient(horizon_bars, ic, se, t_stat, significant, rows)


def window_ics(signal: np.ndarray, close: np.ndarray, window_bars: int) -> list[WindowIC]:
    """Return the IC at h = 1 in consecutive windows of `window_bars` from bar 0.

    A last window shorter than half a window is merged into the one before it.
    """
    signal = np.asarray(signal, dtype="float64")
    returns = forward_log_returns(close, 1)
    bars = len(signal)
    starts = list(range(0, bars, window_bars))
    if len(starts) > 1 and bars - starts[-1] < window_bars / 2:
        starts.pop()
    out = []
    for i, first in enumerate(starts):
        last = starts[i + 1] - 1 if i + 1 < len(starts) else bars - 1
        part = slice(first, last + 1)
        pairs = int((np.isfinite(signal[part]) & np.isfinite(returns[part])).sum())
        out.append(WindowIC(first, last, spearman_ic(signal[part], returns[part]), pairs))
    return out


def consistency(windows: Sequence[WindowIC], overall_ic: float | None) -> float | None:
    """Return the share of measured windows whose IC has the overall IC's sign (None: none)."""
    measured = [w.ic for w in windows if w.ic is not None]
    if not measured or overall_ic is None or overall_ic == 0.0:
        return None
    same = sum(1 for ic in measured if np.sign(ic) == np.sign(overall_ic))
    return same / len(measured)


def half_life(ics: Sequence[InformationCoefficient]) -> float | None:
    """Return the horizon at which |IC| falls to half its value at the shortest horizon.

    Interpolated linearly between the two measured horizons around it; None when the first
    IC is not significant, or |IC| never falls to half (or changes sign) within the horizons.
    """
    first = ics[0]
    if first.ic is None or not first.significant:
        return None
    half = abs(first.ic) / 2.0
    previous_h, previous = first.horizon_bars, abs(first.ic)
    for item in ics[1:]:
        if item.ic is None:
            return None
        value = item.ic * np.sign(first.ic)  # a sign change counts as falling through zero
        if value <= half:
            share = (previous - half) / (previous - value)
            return float(previous_h + share * (item.horizon_bars - previous_h))
        previous_h, previous = item.horizon_bars, value
    return None


def turnover(signal: np.ndarray) -> float | None:
    """Return the mean |signal[t] - signal[t-1]| over bars where both are finite."""
    signal = np.asarray(signal, dtype="float64")
    step = np.abs(np.diff(signal))
    step = step[np.isfinite(step)]
    return float(step.mean()) if step.size else None


def autocorrelation(signal: np.ndarray, lag_bars: int) -> float | None:
    """Return the Pearson correlation of signal[t] with signal[t - lag] (None: too few, flat)."""
    signal = np.asarray(signal, dtype="float64")
    if lag_bars >= len(signal):
        return None
    a, b = signal[lag_bars:], signal[: len(signal) - lag_bars]
    rows = np.isfinite(a) & np.isfinite(b)
    if int(rows.sum()) < MIN_PAIRS or a[rows].std() <= 0.0 or b[rows].std() <= 0.0:
        return None
    return float(np.corrcoef(a[rows], b[rows])[0, 1])


def signal_diagnostics(
    signal: np.ndarray,
    close: np.ndarray,
    *,
    significance: float,
    bootstrap_samples: int,
    bootstrap_block_bars: int,
    horizons_bars: Sequence[int] = HORIZONS_BARS,
    window_bars: int = WINDOW_BARS,
    seed: int = 0,
) -> SignalDiagnostics:
    """Return every figure of `signal` (NaN where it has no value) against the closes.

    Args:
        signal: one value per bar, known at the bar's close.
        close: the bars' closes, aligned with `signal`.
        significance: `rewards.significance`: |IC| / SE above it is significant.
        bootstrap_samples: `rewards.bootstrap_samples`.
        bootstrap_block_bars: `rewards.bootstrap_block_bars` (at least the horizon is used).
        horizons_bars: the horizons, shortest first (the first is the half-life's base).
        window_bars: bars per consistency window.
        seed: the bootstrap seed.
    """
    signal = np.asarray(signal, dtype="float64")
    close = np.asarray(close, dtype="float64")
    if signal.shape != close.shape or signal.ndim != 1:
        raise ValueError(f"signal {signal.shape} and close {close.shape} must be 1-D, same length")
    ics = tuple(
        information_coefficient(
            signal,
            close,
            h,
            significance=significance,
            bootstrap_samples=bootstrap_samples,
            bootstrap_block_bars=bootstrap_block_bars,
            seed=seed,
        )
        for h in horizons_bars
    )
    windows = tuple(window_ics(signal, close, window_bars))
    return SignalDiagnostics(
        bars=len(signal),
        ic=ics,
        windows=windows,
        window_bars=window_bars,
        consistency=consistency(windows, ics[0].ic),
        half_life_bars=half_life(ics),
        turnover=turnover(signal),
        autocorrelation={lag: autocorrelation(signal, lag) for lag in AUTOCORRELATION_LAGS},
        significance=significance,
    )


def overlap(
    signal: np.ndarray, registered: Mapping[str, np.ndarray], *, threshold: float, lags: int
) -> Overlap:
    """Return how much of `signal` the registered signals explain, as originality measures it."""
    explanation = explain(signal, registered, lags)
    return Overlap(
        r2=explanation.r2,
        alone=explanation.alone,
        explained_by=tuple(explanation.explained_by(EXPLAINER_FLOOR)),
        threshold=threshold,
        lags=lags,
    )
