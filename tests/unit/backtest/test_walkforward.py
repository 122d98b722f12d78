"""Walk-forward: contiguous, non-overlapping test windows; no trainer ever sees its future;
trainings spread over a compute backend give the result of training and testing in turn."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from agent.backtest import engine, walkforward
from agent.backtest.engine import BacktestConfig, ModelPolicy
from agent.compute import LocalBackend
from agent.dex.pool import PoolConfig
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ConfigError
from tests.support.crossing import CrossingBackend


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


# --- trainings as compute tasks ---------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """A picklable model: all in when `observation @ weights > 0`, else all out."""

    weights: np.ndarray

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return np.array([1.0 if float(observation @ self.weights) > 0 else 0.0])


@dataclass(frozen=True)
class Churn:
    """A picklable model that flips between all in and all out every bar."""

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return np.array([0.0 if observation[-1] > 0.5 else 1.0])


@dataclass
class LinearTrainer:
    """A picklable trainer whose model depends on the seed and on the data it was given."""

    calls: list[int] = field(default_factory=list)

    def __call__(
        self, data: MarketData, train_start: int, train_end: int, seed: int
    ) -> ModelPolicy:
        self.calls.append(seed)
        size = 16 * 3 + 2 * data.n_strategies + 1
        weights = np.random.default_rng([seed, data.bars, train_start]).normal(size=size)
        return ModelPolicy(f"linear-{seed}", Threshold(weights), EnvConfig(action="continuous"))


@dataclass
class RuinTrainer:
    """A picklable trainer whose window `churn_seed` churns; every other window stays in cash."""

    churn_seed: int
    calls: list[int] = field(default_factory=list)

    def __call__(
        self, data: MarketData, train_start: int, train_end: int, seed: int
    ) -> ModelPolicy:
        self.calls.append(seed)
        size = 16 * 3 + 2 * data.n_strategies + 1
        model = Churn() if seed == self.churn_seed else Threshold(np.zeros(size))
        return ModelPolicy(f"ruin-{seed}", model, EnvConfig(action="continuous"))


def train_and_test_in_turn(
    data: MarketData,
    windows: list[walkforward.Window],
    trainer: walkforward.Trainer,
    config: BacktestConfig,
    seed: int,
) -> list[engine.BacktestResult]:
    """The walk-forward by hand: train window k on the data up to its end, test, carry value."""
    results = []
    value = config.initial_value_quote
    for window in windows:
        visible = data.window(0, window.train_end + 1)
        model = trainer(visible, window.train_start, window.train_end, seed + window.index)
        window_config = replace(
            config, start=window.test_start, end=window.test_end, initial_value_quote=value
        )
        results.append(engine.run_backtest(data, model, window_config))
        value = float(results[-1].equity[-1])
        if results[-1].terminated:
            break
    return results


def test_the_local_backend_trains_and_tests_each_window_in_turn(market: MarketData) -> None:
    windows = walkforward.make_windows(48, market.bars - 1, train_bars=200, test_bars=150)
    config = BacktestConfig()
    expected = train_and_test_in_turn(market, windows, LinearTrainer(), config, seed=5)
    trainer = LinearTrainer()
    outcome = walkforward.run_walkforward(
        market, windows, trainer, config, seed=5, backend=LocalBackend()
    )
    assert len(windows) == 3 and trainer.calls == [5, 6, 7]
    assert [r.fingerprint for r in outcome.window_results] == [r.fingerprint for r in expected]
    assert [row["fingerprint"] for row in outcome.windows] == [r.fingerprint for r in expected]
    assert np.array_equal(outcome.stitched.equity, walkforward.stitch(expected).equity)
    assert outcome.stitched.fingerprint == walkforward.stitch(expected).fingerprint
    default = walkforward.run_walkforward(market, windows, LinearTrainer(), config, seed=5)
    assert default.windows == outcome.windows  # no backend: the local one


def test_trainings_that_cross_to_workers_give_the_same_result(market: MarketData) -> None:
    windows = walkforward.make_windows(48, market.bars - 1, train_bars=200, test_bars=150)
    config = BacktestConfig()
    local = walkforward.run_walkforward(market, windows, LinearTrainer(), config, seed=5)
    backend = CrossingBackend()
    seen: list[tuple[int, int]] = []
    spread = walkforward.run_walkforward(
        market,
        windows,
        LinearTrainer(),
        config,
        seed=5,
        backend=backend,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert backend.tasks == len(windows)
    assert seen[-1] == (len(windows), len(windows))
    assert spread.windows == local.windows  # every row: returns, trades, fingerprints
    assert spread.stitched.fingerprint == local.stitched.fingerprint
    assert np.array_equal(spread.stitched.equity, local.stitched.equity)


def test_a_ruin_ends_the_walk_forward_on_every_backend(market: MarketData) -> None:
    windows = walkforward.make_windows(48, market.bars - 1, train_bars=200, test_bars=150)
    ruinous = BacktestConfig(pool=PoolConfig(fee_bps=1000, gas_price_gwei=0.0))
    local_trainer = RuinTrainer(churn_seed=6)  # window 1 churns at a 10 % fee
    local = walkforward.run_walkforward(market, windows, local_trainer, ruinous, seed=5)
    backend = CrossingBackend()
    spread = walkforward.run_walkforward(
        market, windows, RuinTrainer(churn_seed=6), ruinous, seed=5, backend=backend
    )
    assert [row["window"] for row in local.windows] == [0, 1]
    assert local.windows[-1]["ruined"] and local.stitched.terminated
    assert local_trainer.calls == [5, 6]  # here, nothing after the ruin is trained
    assert backend.tasks == len(windows)  # spread: every window trained, the rest discarded
    assert spread.windows == local.windows
    assert spread.stitched.fingerprint == local.stitched.fingerprint
