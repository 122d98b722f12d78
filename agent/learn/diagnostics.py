"""How a policy behaves over a fixed window, and warnings when it behaves degenerately.

Runs come from the one rollout (`agent.env.rollout.rollout`); `window_metrics` turns a
`RolloutResult` into the numbers training, the promotion gate and reports use (net return,
costs, turnover, exposure). `degenerate_warnings` flags agents that learned something useless:
one that never trades, one that is always fully invested (buy-and-hold with extra steps), one
that overtrades (turnover far above what the strategies it watches would cause), and a
training run whose reward rose while the net value on validation fell (it learned the reward,
not the market).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from agent.env.rollout import RolloutResult

FULLY_INVESTED = 0.98
"""Exposure at or above which a bar counts as fully invested."""
ALWAYS_INVESTED_SHARE = 0.98
"""Share of bars fully invested above which the agent is 'always fully invested'."""
OVERTRADE_FACTOR = 3.0
"""Turnover per bar above this multiple of the strategies' median turnover is overtrading."""
MIN_OVERTRADE_TURNOVER = 0.01
"""Turnover per bar below this is never called overtrading (a few trades a year are fine)."""
REWARD_RISE_SHARE = 0.1
"""Relative rise of the mean training reward that counts as 'reward rises'."""
VALUE_FALL_MARGIN = 0.05
"""Fall of the mean validation log return that counts as 'net value falls' (beyond noise)."""


@dataclass(frozen=True)
class WindowMetrics:
    """What a policy achieved over one window, net of every cost.

    Attributes:
        bars: decisions made.
        total_return: final value / initial value - 1.
        log_return: log of final value / initial value (the selection score).
        cost_fraction: fees + impact + gas, as a fraction of the initial value.
        trades: swaps made.
        turnover_per_bar: mean absolute exposure change per bar.
        mean_exposure: mean exposure after each decision.
        fully_invested_share: share of bars at or above `FULLY_INVESTED`.
        reward_sum: sum of the environment's rewards.
        sharpe: the mean per-bar net log return over its standard deviation, times the square
            root of the bars (a t-statistic of the window's return: how surely it is not luck;
            0 when the value never moves).
    """

    bars: int
    total_return: float
    log_return: float
    cost_fraction: float
    trades: int
    turnover_per_bar: float
    mean_exposure: float
    fully_invested_share: float
    reward_sum: float
    sharpe: float = 0.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def window_metrics(result: RolloutResult) -> WindowMetrics:
    """Summarise a run of the rollout (see `WindowMetrics`)."""
    t = result
    initial = t.initial_value_quote
    final = float(t.value_quote[-1]) if t.steps else initial
    turnover = np.where(t.traded, np.abs(t.target - t.exposure_before), 0.0)
    return WindowMetrics(
        bars=t.steps,
        total_return=final / initial - 1.0,
        log_return=math.log(final / initial) if final > 0 else -math.inf,
        cost_fraction=float(t.cost_quote.sum()) / initial,
        trades=int(t.traded.sum()),
        turnover_per_bar=float(turnover.mean()) if t.steps else 0.0,
        mean_exposure=float(t.exposure.mean()) if t.steps else 0.0,
        fully_invested_share=float((t.exposure >= FULLY_INVESTED).mean()) if t.steps else 0.0,
        reward_sum=float(t.reward.sum()),
        sharpe=_t_statistic(t.value_quote, initial),
    )


def _t_statistic(value_quote: np.ndarray, initial: float) -> float:
    """mean / std * sqrt(n) of the per-bar log returns of a value series starting at `initial`."""
    values = np.concatenate([[initial], np.asarray(value_quote, dtype="float64")])
    if len(values) < 3 or not (values > 0).all():
        return 0.0
    returns = np.diff(np.log(values))
    spread = float(returns.std(ddof=1))
    if spread == 0.0 or not math.isfinite(spread):
        return 0.0
    return float(returns.mean() / spread * math.sqrt(len(returns)))


def strategy_turnover(signals: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return each strategy's turnover per bar if its signal were followed as an exposure.

    A signal s in [-1, 1] maps to the exposure (s + 1) / 2; bars where it is unavailable count
    as no change.
    """
    exposure = np.where(mask, (np.asarray(signals, dtype="float64") + 1.0) / 2.0, np.nan)
    change = np.abs(np.diff(exposure, axis=0))
    change = np.where(np.isnan(change), 0.0, change)
    return change.mean(axis=0) if len(change) else np.zeros(exposure.shape[1])


@dataclass(frozen=True)
class TrainingPoint:
    """One evaluation during training: the in-sample reward and the validation outcome."""

    step: int
    train_reward: float
    validation_log_return: float


def degenerate_warnings(
    trajectory: RolloutResult,
    *,
    strategy_turnover_per_bar: Sequence[float] | np.ndarray = (),
    history: Sequence[TrainingPoint] = (),
) -> list[str]:
    """Return a warning for each way the agent looks degenerate (empty when it looks sane).

    Args:
        trajectory: the agent's deterministic run over a window (validation or test).
        strategy_turnover_per_bar: each strategy's turnover per bar on the same window
            (`strategy_turnover`); no overtrading check without it.
        history: the evaluations made during training, oldest first.
    """
    metrics = window_metrics(trajectory)
    warnings: list[str] = []
    if metrics.bars and metrics.trades == 0:
        warnings.append(
            f"never trades: no swap in {metrics.bars} bars (the policy learned to stay flat)"
        )
    if metrics.bars and metrics.fully_invested_share >= ALWAYS_INVESTED_SHARE:
        warnings.append(
            f"always fully invested: {metrics.fully_invested_share:.0%} of bars at exposure "
            f">= {FULLY_INVESTED} (it behaves like buy-and-hold)"
        )
    reference = np.asarray(strategy_turnover_per_bar, dtype="float64")
    if reference.size and metrics.turnover_per_bar >= MIN_OVERTRADE_TURNOVER:
        median = float(np.median(reference))
        if metrics.turnover_per_bar > OVERTRADE_FACTOR * median:
            warnings.append(
                f"overtrades: turnover {metrics.turnover_per_bar:.3f} per bar, more than "
                f"{OVERTRADE_FACTOR:g}x the strategies' median {median:.3f} "
                f"(costs {metrics.cost_fraction:.1%} of the starting value)"
            )
    divergence = reward_value_divergence(history)
    if divergence:
        warnings.append(divergence)
    return warnings


def reward_value_divergence(history: Sequence[TrainingPoint]) -> str | None:
    """Return a warning if the training reward rose while the validation net value fell.

    Compares the first and the second half of the evaluations: the mean training reward must
    have risen and the mean validation log return fallen, each by a clear margin, so noise
    between two evaluations does not trigger it.
    """
    points = [p for p in history if math.isfinite(p.train_reward)]
    if len(points) < 4:
        return None
    half = len(points) // 2
    early, late = points[:half], points[half:]
    reward_early = float(np.mean([p.train_reward for p in early]))
    reward_late = float(np.mean([p.train_reward for p in late]))
    value_early = float(np.mean([p.validation_log_return for p in early]))
    value_late = float(np.mean([p.validation_log_return for p in late]))
    reward_scale = max(abs(reward_early), abs(reward_late), 1e-9)
    if (
        reward_late - reward_early > REWARD_RISE_SHARE * reward_scale
        and value_late < value_early - VALUE_FALL_MARGIN
    ):
        return (
            f"reward rises while net value falls: mean training episode reward "
            f"{reward_early:+.4f} -> {reward_late:+.4f}, validation log return "
            f"{value_early:+.4f} -> {value_late:+.4f} (overfitting the training split, or a "
            "reward that pays for something other than value)"
        )
    return None


def paired_advantage(returns: np.ndarray, reference: np.ndarray | None) -> float:
    """Return how many standard errors `returns` beat `reference` by, summed over the bars.

    Both are per-bar log returns of two policies over the same window (None: staying flat,
    all zeros). The standard error is that of the sum of the per-bar differences.
    """
    diff = np.asarray(returns, dtype="float64")
    if reference is not None:
        diff = diff - reference
    if diff.size < 2:
        return 0.0
    spread = float(diff.std(ddof=1)) * math.sqrt(diff.size)
    total = float(diff.sum())
    if spread <= 1e-12:
        return 0.0 if abs(total) <= 1e-12 else math.copysign(math.inf, total)
    return total / spread
