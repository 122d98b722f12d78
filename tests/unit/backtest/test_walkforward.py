"""Walk-forward: contiguous, non-overlapping test windows; no trainer ever sees its future."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from agent.backtest import engine, walkforward
from agent.backtest.engine import BacktestConfig, ModelPolicy
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ConfigError


def test_windows_roll_forward_without_gaps_or_overlap() -> None:
    windows = walkforward.make_windows(50, 1000, train_bars=300, test_bars=200)
    assert [(w.train_start, w.train_end, w.test_start, w.test_end) for w in windows] == [
        (50, 350, 350, 550),
        (250, 550, 550, 750),
        (450, 750, 750, 950),
        (650, 950, 950, 1000),
    ]
    for before, after in itertools.pairwise(windows):
        assert after.test_start == before.test_end  # contiguous, no overlap
    assert all(w.train_end == w.test_start for w in windows)  # trained just before its test


def test_too_short_a_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot hold"):
        walkforward.make_windows(0, 100, train_bars=100, test_bars=10)


class SpyTrainer:
    """Records what each training call could see; returns a policy that reads its input."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int, int]] = []

    def __call__(
        self, data: MarketData, train_start: int, train_end: int, seed: int
    ) -> ModelPolicy:
        self.calls.append((data.bars, train_start, train_end, seed))
        weights = np.random.default_rng(seed).normal(size=16 * 3 + 2 * data.n_strategies + 1)

        def predict(observation: np.ndarray) -> np.ndarray:
            return np.array([1.0 if float(observation @ weights) > 0 else 0.0])

        return ModelPolicy(f"spy-{seed}", predict, EnvConfig(action="continuous"))


def test_walk_forward_stitches_out_of_sample_runs_and_hides_the_future(market: MarketData) -> None:
    windows = walkforward.make_windows(48, market.bars - 1, train_bars=200, test_bars=100)
    spy = SpyTrainer()
    config = BacktestConfig()
    outcome = walkforward.run_walkforward(market, windows, spy, config, seed=10)

    for (bars, train_start, train_end, seed), window in zip(spy.calls, windows, strict=True):
        assert bars == window.train_end + 1  # the data ends at the last training close
        assert (train_start, train_end, seed) == (
            window.train_start,
            window.train_end,
            10 + window.index,
        )
    stitched = outcome.stitched
    assert stitched.start == windows[0].test_start
    assert stitched.decisions == windows[-1].test_end - windows[0].test_start
    assert np.array_equal(
        stitched.open_time, market.open_time[windows[0].test_start : windows[-1].test_end + 1]
    )
    # each window starts with the value the previous one ended with
    parts = outcome.window_results
    for before, after in itertools.pairwise(parts):
        assert after.equity[0] == pytest.approx(before.equity[-1], abs=1e-6)
    assert stitched.equity[-1] == parts[-1].equity[-1]
    assert [w["window"] for w in outcome.windows] == list(range(len(windows)))
    assert stitched.swaps > 0


def test_a_window_result_equals_a_plain_backtest_of_that_model(market: MarketData) -> None:
    windows = walkforward.make_windows(48, 400, train_bars=150, test_bars=100)
    spy = SpyTrainer()
    outcome = walkforward.run_walkforward(market, windows, spy, BacktestConfig())
    first = windows[0]
    again = engine.run_backtest(
        market,
        spy(market.window(0, first.train_end + 1), first.train_start, first.train_end, 0),
        BacktestConfig(start=first.test_start, end=first.test_end),
    )
    assert engine.same_run(again, outcome.window_results[0])


def test_stitching_refuses_runs_that_are_not_contiguous(market: MarketData) -> None:
    config = BacktestConfig(start=48, end=100)
    a = engine.run_backtest(market, engine.flat(market), config)
    b = engine.run_backtest(market, engine.flat(market), BacktestConfig(start=101, end=150))
    with pytest.raises(ConfigError, match="not contiguous"):
        walkforward.stitch([a, b])
