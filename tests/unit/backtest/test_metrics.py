"""Every metric against values computed by hand on small fixed equity curves."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.backtest import metrics as m

# A 4-bar run: up 10 %, down 10 %, up to 104, down to 96. Exposure after each decision
# [1, 0, 1, 1]: one closed trade (decisions 0-1) and one still open at the end (2-3).
EQUITY = np.array([100.0, 110.0, 99.0, 104.0, 96.0])
EXPOSURE = np.array([1.0, 0.0, 1.0, 1.0])
FEES = np.array([0.6, 0.6, 0.3, 0.0])
IMPACT = np.array([0.3, 0.3, 0.2, 0.0])
GAS = np.array([0.1, 0.1, 0.0, 0.0])
TRADED = np.array([100.0, 110.0, 99.0, 0.0])
RETURNS = [0.1, -0.1, 104 / 99 - 1, 96 / 104 - 1]


def test_returns_total_return_and_cagr() -> None:
    assert m.bar_returns(EQUITY) == pytest.approx(RETURNS, abs=1e-15)
    assert m.total_return(EQUITY) == pytest.approx(-0.04)
    # 4 bars with 4 bars a year is exactly one year: CAGR = total return
    assert m.cagr(EQUITY, 4.0) == pytest.approx(-0.04)
    # the same 4 bars as half a year compound twice
    assert m.cagr(EQUITY, 8.0) == pytest.approx(0.96**2 - 1)


def test_volatility_sharpe_and_sortino() -> None:
    mean = sum(RETURNS) / 4
    std = math.sqrt(sum((r - mean) ** 2 for r in RETURNS) / 3)
    downside = math.sqrt((0.1**2 + (96 / 104 - 1) ** 2) / 4)
    assert m.annual_volatility(np.array(RETURNS), 365) == pytest.approx(std * math.sqrt(365))
    assert m.sharpe_ratio(np.array(RETURNS), 365) == pytest.approx(mean / std * math.sqrt(365))
    assert m.sortino_ratio(np.array(RETURNS), 365) == pytest.approx(
        mean / downside * math.sqrt(365)
    )
    assert std == pytest.approx(statistics.stdev(RETURNS))


def test_drawdown_depth_duration_and_calmar() -> None:
    assert m.drawdown(EQUITY) == pytest.approx([0, 0, -0.1, 104 / 110 - 1, 96 / 110 - 1])
    assert m.max_drawdown(EQUITY) == pytest.approx(14 / 110)
    assert m.max_drawdown_duration(EQUITY) == 3  # peak at bar 1, still under water at bar 4
    assert m.calmar_ratio(EQUITY, 4.0) == pytest.approx(-0.04 / (14 / 110))


def test_drawdown_duration_counts_from_peak_to_recovery() -> None:
    # peak 10 at bar 1, under water at bars 2-4, regained at bar 5; a shallower one later
    equity = np.array([9.0, 10.0, 8.0, 7.0, 9.0, 10.0, 11.0, 10.5, 12.0])
    assert m.max_drawdown_duration(equity) == 4
    assert m.max_drawdown(equity) == pytest.approx(0.3)
    assert m.max_drawdown_duration(np.array([1.0, 2.0, 3.0])) == 0
    assert m.max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_round_trips_win_rate_profit_factor_expectancy_and_sqn() -> None:
    costs = FEES + IMPACT + GAS
    trips = m.round_trips(EXPOSURE, EQUITY, costs)
    assert [(t.entry, t.exit) for t in trips] == [(0, 1), (2, None)]
    # trade 1: 100 before entering, 110 at the close minus the 1.0 cost of the exit trade
    assert trips[0].pnl == pytest.approx(9.0)
    assert trips[0].return_ == pytest.approx(0.09)
    # trade 2: 99 before entering, marked at the final close 96
    assert trips[1].pnl == pytest.approx(-3.0)
    assert trips[1].return_ == pytest.approx(96 / 99 - 1)
    returns = np.array([0.09, 96 / 99 - 1])
    assert m.win_rate(returns) == 0.5
    assert m.profit_factor(np.array([9.0, -3.0])) == pytest.approx(3.0)
    assert m.expectancy(returns) == pytest.approx((0.09 + 96 / 99 - 1) / 2)
    spread = abs(0.09 - (96 / 99 - 1)) / math.sqrt(2)  # sample std of two values
    assert m.sqn(returns) == pytest.approx(math.sqrt(2) * ((0.09 + 96 / 99 - 1) / 2) / spread)


def test_exposure_time_and_turnover() -> None:
    assert m.exposure_time(EXPOSURE) == 0.75
    assert m.turnover(TRADED, EQUITY) == pytest.approx(309 / (509 / 5))


def test_compute_metrics_puts_it_together() -> None:
    result = m.compute_metrics(EQUITY, EXPOSURE, TRADED, FEES, IMPACT, GAS, 3, 4.0, 0.25)
    assert result.bars == 4
    assert result.trades == 2 and result.closed_trades == 1
    assert result.swaps == 3
    assert result.fees_quote == pytest.approx(1.5)
    assert result.impact_quote == pytest.approx(0.8)
    assert result.gas_quote == pytest.approx(0.2)
    assert result.costs_quote == pytest.approx(2.5)
    assert result.max_drawdown_days == pytest.approx(0.75)
    assert result.turnover_annual == pytest.approx(result.turnover)  # the run is one year
    assert result.as_dict()["profit_factor"] == pytest.approx(3.0)


def test_undefined_metrics_are_nan_and_json_safe() -> None:
    flat = np.full(5, 100.0)
    zeros = np.zeros(4)
    result = m.compute_metrics(flat, zeros, zeros, zeros, zeros, zeros, 0, 365.0, 1.0)
    assert math.isnan(result.sharpe) and math.isnan(result.win_rate)
    data = result.as_dict()
    assert data["sharpe"] is None and data["win_rate"] is None and data["total_return"] == 0.0
    assert m.json_number(math.inf) == "inf" and m.json_number(-math.inf) == "-inf"
    assert m.profit_factor(np.array([2.0, 1.0])) == math.inf


def test_degenerate_agents_are_flagged() -> None:
    zeros = np.zeros(100)
    equity = np.full(101, 100.0)
    never = m.compute_metrics(equity, zeros, zeros, zeros, zeros, zeros, 0, 365.0, 1.0)
    assert any("never trades" in w for w in m.degenerate_warnings(never, zeros))
    full = np.ones(100)
    always = m.compute_metrics(equity, full, zeros, zeros, zeros, zeros, 1, 365.0, 1.0)
    assert any("fully invested" in w for w in m.degenerate_warnings(always, full))
    busy = m.compute_metrics(equity, full, zeros, zeros, zeros, zeros, 60, 365.0, 1.0)
    assert any("overtrades" in w for w in m.degenerate_warnings(busy, full))
    costly = m.compute_metrics(equity, zeros, zeros, np.full(100, 0.2), zeros, zeros, 5, 365, 1.0)
    assert any("costs" in w for w in m.degenerate_warnings(costly, zeros))


def test_signal_correlation_uses_bars_where_both_are_available() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    values = np.column_stack([x, -x, np.array([9.0, 1.0, 2.0, 3.0, 4.0])])
    mask = np.ones_like(values, dtype=bool)
    mask[0, 2] = False  # the outlier is unavailable: column 2 equals x - 1 where both exist
    corr = m.signal_correlation(values, mask)
    assert corr[0, 1] == pytest.approx(-1.0)
    assert corr[0, 2] == pytest.approx(1.0)
    assert np.allclose(np.diag(corr), 1.0)


@given(st.lists(st.floats(0.01, 1e6), min_size=2, max_size=60))
def test_drawdown_is_between_zero_and_one_and_zero_at_new_highs(values: list[float]) -> None:
    equity = np.array(values)
    dd = m.drawdown(equity)
    assert np.all(dd <= 0) and np.all(dd > -1)
    assert 0.0 <= m.max_drawdown(equity) < 1.0
    assert 0 <= m.max_drawdown_duration(equity) <= len(values) - 1
    running_max = np.maximum.accumulate(equity)
    assert np.all(dd[equity == running_max] == 0)
