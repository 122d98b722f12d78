"""Degenerate-agent warnings on crafted trajectories, and the window metrics behind them."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.env.rollout import RolloutResult
from agent.learn.diagnostics import (
    TrainingPoint,
    degenerate_warnings,
    reward_value_divergence,
    strategy_turnover,
    window_metrics,
)

BARS = 500


def _trajectory(exposure: np.ndarray, *, cost_per_trade: float = 30.0) -> RolloutResult:
    """A run whose exposure path is given; trades happen where the exposure changes."""
    n = len(exposure)
    before = np.concatenate([[0.0], exposure[:-1]])
    traded = np.abs(exposure - before) > 1e-9
    rng = np.random.default_rng(0)
    reward = exposure * rng.normal(0.0, 0.005, n)
    value = 10_000.0 * np.exp(np.cumsum(reward))
    zeros = np.zeros(n)
    return RolloutResult(
        name="crafted",
        kind="model",
        start=0,
        open_time=np.arange(n + 1, dtype="int64"),
        close=np.ones(n + 1),
        equity=np.concatenate([[10_000.0], value]),
        target=exposure.astype("float64"),
        exposure_before=before,
        exposure=exposure.astype("float64"),
        side=traded.astype("int8"),
        traded_quote=zeros,
        fee_quote=np.where(traded, cost_per_trade, 0.0),
        impact_quote=zeros,
        gas_quote=zeros,
        base=zeros,
        quote=zeros,
        reward=reward,
    )


def _sane() -> RolloutResult:
    exposure = np.zeros(BARS)
    exposure[100:250] = 1.0
    exposure[300:420] = 0.5
    return _trajectory(exposure)


STRATEGY_TURNOVER = np.array([0.02, 0.03, 0.05])


def test_a_sane_agent_gets_no_warning() -> None:
    assert degenerate_warnings(_sane(), strategy_turnover_per_bar=STRATEGY_TURNOVER) == []


def test_never_trading_is_flagged() -> None:
    warnings = degenerate_warnings(_trajectory(np.zeros(BARS)))
    assert len(warnings) == 1 and warnings[0].startswith("never trades")


def test_always_fully_invested_is_flagged() -> None:
    warnings = degenerate_warnings(_trajectory(np.ones(BARS)))
    assert len(warnings) == 1 and warnings[0].startswith("always fully invested")


def test_overtrading_against_the_strategies_is_flagged() -> None:
    churn = np.tile([0.0, 1.0], BARS // 2)
    warnings = degenerate_warnings(_trajectory(churn), strategy_turnover_per_bar=STRATEGY_TURNOVER)
    assert any(w.startswith("overtrades") for w in warnings)
    # the same agent next to strategies that churn as much is not overtrading
    assert not degenerate_warnings(_trajectory(churn), strategy_turnover_per_bar=[0.9, 1.0])


def test_reward_rising_while_validation_value_falls_is_flagged() -> None:
    history = [
        TrainingPoint(step, reward, value)
        for step, reward, value in [
            (1, -1.5, 0.20),
            (2, -1.2, 0.18),
            (3, -0.6, 0.05),
            (4, -0.3, -0.02),
        ]
    ]
    message = reward_value_divergence(history)
    assert message is not None and message.startswith("reward rises while net value falls")
    warnings = degenerate_warnings(_sane(), history=history)
    assert warnings == [message]


def test_reward_and_value_rising_together_is_fine() -> None:
    history = [TrainingPoint(i, -1.0 + 0.3 * i, 0.05 * i) for i in range(6)]
    assert reward_value_divergence(history) is None
    small_dip = [TrainingPoint(i, -1.0 + 0.3 * i, 0.10 - 0.005 * i) for i in range(6)]
    assert reward_value_divergence(small_dip) is None  # within noise
    assert reward_value_divergence(history[:3]) is None  # too few evaluations to tell


def test_window_metrics_of_a_crafted_trajectory() -> None:
    trajectory = _sane()
    metrics = window_metrics(trajectory)
    assert metrics.bars == BARS
    assert metrics.trades == 4
    assert metrics.turnover_per_bar == pytest.approx((1.0 + 1.0 + 0.5 + 0.5) / BARS)
    assert metrics.cost_fraction == pytest.approx(4 * 30.0 / 10_000.0)
    final = trajectory.value_quote[-1]
    assert metrics.total_return == pytest.approx(final / 10_000.0 - 1.0)
    assert metrics.log_return == pytest.approx(math.log(final / 10_000.0))
    assert metrics.fully_invested_share == pytest.approx(150 / BARS)


def test_strategy_turnover_follows_the_signal_as_an_exposure() -> None:
    signals = np.array([[-1.0, 0.0], [1.0, 0.0], [-1.0, 0.5], [-1.0, 0.0]])
    mask = np.array([[True, False], [True, True], [True, True], [True, True]])
    np.testing.assert_allclose(strategy_turnover(signals, mask), [2 / 3, 0.5 / 3])


def test_the_sharpe_of_a_window_is_the_t_statistic_of_its_per_bar_log_returns() -> None:
    from agent.learn.diagnostics import _t_statistic

    values = np.array([101.0, 100.0, 103.0, 104.0, 102.0])
    returns = np.diff(np.log(np.concatenate([[100.0], values])))
    expected = returns.mean() / returns.std(ddof=1) * np.sqrt(5)
    assert _t_statistic(values, 100.0) == pytest.approx(expected)
    assert _t_statistic(np.full(5, 100.0), 100.0) == 0.0  # never moves: no evidence
    assert _t_statistic(np.array([50.0, 0.0]), 100.0) == 0.0  # ruined
