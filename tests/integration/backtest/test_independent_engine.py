"""An independent engine confirms ours: backtesting.py on the GOOG daily data it ships.

The same long-or-flat moving-average crossover (SMA 10 / SMA 20: long while the fast average
is above the slow one) runs in backtesting.py and through Agora's whole pipeline (CSV import,
strategy plugin, signal -> exposure mapping, engine, pool). The costs are made comparable: a
pool so deep that price impact is negligible, the same proportional fee (0.2 %, our pool fee
versus its commission on each side), no gas, and the same fill timing (the decision at bar t
fills at bar t's close: `trade_on_close=True`). Tolerance: the same trades, bar for bar, and
final equity within 0.5 % (the libraries differ only in how the fee enters the fill size and
in backtesting.py keeping 0.01 % of cash uninvested).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from backtesting import Strategy as LibStrategy
from backtesting.lib import FractionalBacktest
from backtesting.test import GOOG, SMA

from agent.backtest.metrics import round_trips
from agent.backtest.runner import run_scenario
from agent.backtest.scenario import parse_scenario
from agent.config import Settings
from strategies import MACrossover

FEE = 0.002
CASH = 1_000_000.0
TOLERANCE = 0.005


class LongOrFlatSmaCross(LibStrategy):
    """backtesting.py's SmaCross example, long-only: in while SMA(10) > SMA(20), else out."""

    def init(self) -> None:
        self.fast = self.I(SMA, self.data.Close, 10)
        self.slow = self.I(SMA, self.data.Close, 20)

    def next(self) -> None:
        if self.fast[-1] > self.slow[-1] and not self.position:
            self.buy()
        elif self.fast[-1] < self.slow[-1] and self.position:
            self.position.close()


def _library_run() -> pd.Series:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "some trades remain open": we compare open ones too
        backtest = FractionalBacktest(
            GOOG,
            LongOrFlatSmaCross,
            cash=CASH,
            commission=FEE,
            trade_on_close=True,
            finalize_trades=False,
            fractional_unit=1e-6,
        )
        return backtest.run()


def _goog_csv(path: Path) -> Path:
    frame = GOOG.reset_index()
    frame.columns = ["time", "open", "high", "low", "close", "volume"]
    frame["time"] = pd.to_datetime(frame["time"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.Series, object]:
    csv = _goog_csv(tmp_path_factory.mktemp("goog") / "goog.csv")
    scenario = parse_scenario(
        {
            "name": "cross-check",
            "data": {"source": "csv", "path": str(csv), "timeframe": "1d", "warmup_bars": 20},
            "strategies": ["ma-crossover"],
            "strategy_params": {"ma-crossover": {"fast": 10, "slow": 20}},
            "policy": {
                "strategy": "ma-crossover",
                "mapping": {"kind": "threshold", "enter_above": 0.0, "exit_below": 0.0},
            },
            "compare_strategies": False,
            "baselines": [],
            "costs": {
                "fee_bps": round(FEE * 10_000),
                "liquidity_quote": 1e15,
                "gas_price_gwei": 0.0,
                "min_trade_quote": 0.0,
            },
            "initial_value_quote": CASH,
        }
    )
    ours = run_scenario(scenario, Settings(), strategies=[MACrossover])
    return _library_run(), ours


def test_same_trades_bar_for_bar(both: tuple[pd.Series, object]) -> None:
    stats, run = both
    result = run.results[0]  # type: ignore[attr-defined]
    costs = result.fee_quote + result.impact_quote + result.gas_quote
    trips = round_trips(result.exposure, result.equity, costs)
    ours = [
        (t.entry + result.start, None if t.exit is None else t.exit + result.start) for t in trips
    ]
    trades = stats["_trades"]
    closed = [(int(e), int(x)) for e, x in zip(trades["EntryBar"], trades["ExitBar"], strict=True)]
    assert stats["# Trades"] == sum(1 for _, x in ours if x is not None) == len(closed)
    assert [t for t in ours if t[1] is not None] == closed
    assert len(closed) > 30, "the comparison must cover many trades"


def test_final_equity_within_half_a_percent(both: tuple[pd.Series, object]) -> None:
    stats, run = both
    result = run.results[0]  # type: ignore[attr-defined]
    theirs = float(stats["Equity Final [$]"])
    assert abs(float(result.equity[-1]) / theirs - 1) < TOLERANCE
    # fees agree too (theirs: commission on entry and exit, ours: the pool fee on each swap)
    assert run.metrics[result.name].fees_quote == pytest.approx(  # type: ignore[attr-defined]
        float(stats["Commissions [$]"]), rel=0.05
    )
    assert run.metrics[result.name].impact_quote < 1e-4 * CASH  # type: ignore[attr-defined]
    assert np.isclose(result.equity[0], CASH)
