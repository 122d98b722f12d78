"""Walk-forward testing: train on window k, test on window k + 1, roll forward, stitch.

The trainer of window k receives the data cut at the end of its training window (it cannot
see a later bar); its model is then tested on the next `test_bars` bars. Test windows are
contiguous and never overlap, so the stitched curve is purely out of sample: window k + 1
starts, in cash, with the value window k ended with (marked to market at its last close; the
position is not unwound, so no exit cost is charged at a window boundary). A window that
ruins the portfolio ends the walk-forward there.

Only the tests chain; a window's training depends on no other window. So the trainings are
compute tasks (`agent.compute`, one per window, over one shared `TrainingJob`: the data and
the trainer, sent once), and the tests then run in order on the driver. On the local backend
a window is trained just before it is tested, so nothing after a ruin is trained; on Ray every
window trains at once, and the models of windows after a ruin are discarded untested. Either
way the stitched result is the same.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from agent.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    ModelPolicy,
    Progress,
    run_backtest,
)
from agent.backtest.metrics import compute_metrics, json_number
from agent.compute import Backend, LocalBackend
from agent.config import Settings
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.errors import ConfigError, ModelError
from agent.market.schema import format_time_ms

Trainer = Callable[[MarketData, int, int, int], ModelPolicy]
"""(data cut after the training window, first training bar, end of training, seed) -> model.

The model is trained on decisions in [train_start, train_end) of the data it is given, which
ends at bar `train_end` (the close the last training decision is valued at). On a Ray backend
it is pickled to the workers: make it a module-level callable (such as `LearnTrainer`), not a
closure."""


@dataclass(frozen=True)
class Window:
    """One step of a walk-forward: decisions on [train_start, train_end) train the model,
    decisions on [test_start, test_end) test it (valued up to the close of `test_end`)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int


def make_windows(start: int, end: int, train_bars: int, test_bars: int) -> list[Window]:
    """Return the walk-forward windows over decision bars [start, end).

    The first model trains on [start, start + train_bars); each test window is the
    `test_bars` bars that follow the previous one (the last may be shorter, never empty).
    Every model trains on the `train_bars` bars just before its test window.

    Raises:
        ConfigError: the range is too short for one training and one test window.
    """
    if train_bars < 2 or test_bars < 1:
        raise ConfigError("walkforward: train_bars must be >= 2 and test_bars >= 1")
    if end - start < train_bars + 1:
        raise ConfigError(
            f"walkforward: {end - start} bars cannot hold a training window of {train_bars} "
            "bars and a test window after it"
        )
    windows: list[Window] = []
    test_start = start + train_bars
    while test_start < end:
        test_end = min(test_start + test_bars, end)
        windows.append(
            Window(len(windows), test_start - train_bars, test_start, test_start, test_end)
        )
        test_start = test_end
    return windows


@dataclass(frozen=True)
class WalkForwardResult:
    """The stitched out-of-sample run and what each window did."""

    stitched: BacktestResult
    windows: list[dict[str, Any]]
    window_results: list[BacktestResult]


@dataclass(frozen=True)
class TrainingJob:
    """The shared input of every window's training task: sent once (Ray's object store)."""

    data: MarketData
    trainer: Trainer
    seed: int


def train_window(job: TrainingJob, window: Window) -> ModelPolicy:
    """Train one window's model as a compute task: pure, so a rerun gives the same model.

    The data is cut here, in the task, at the window's last training close.
    """
    visible = job.data.window(0, window.train_end + 1)
    return job.trainer(visible, window.train_start, window.train_end, job.seed + window.index)


def run_walkforward(
    data: MarketData,
    windows: list[Window],
    trainer: Trainer,
    config: BacktestConfig,
    *,
    seed: int = 0,
    bars_per_year: float = 8_760.0,
    bar_days: float = 1 / 24,
    name: str = "walk-forward",
    progress: Progress | None = None,
    backend: Backend | None = None,
) -> WalkForwardResult:
    """Train every window's model on `backend` (default: here), test them in turn, and stitch.

    `progress` counts windows done: trained and tested on the local backend, trained on Ray
    (the tests that follow take a fraction of a training's time).
    """
    job = TrainingJob(data, trainer, seed)
    local = backend is None or isinstance(backend, LocalBackend)
    models = _trained(job, windows, backend, None if local else progress)
    results: list[BacktestResult] = []
    rows: list[dict[str, Any]] = []
    value = config.initial_value_quote
    for window, policy in zip(windows, models, strict=True):
        test_config = replace(
            config, start=window.test_start, end=window.test_end, initial_value_quote=value
        )
        result = run_backtest(data, policy, test_config)
        results.append(result)
        value = float(result.equity[-1])
        rows.append(_row(data, window, result, bars_per_year, bar_days))
        if local and progress is not None:
            progress(window.index + 1, len(windows))
        if result.terminated:  # ruined: nothing is left to trade in the later windows
            rows[-1]["ruined"] = True
            break
    return WalkForwardResult(stitch(results, name), rows, results)


def _trained(
    job: TrainingJob, windows: list[Window], backend: Backend | None, progress: Progress | None
) -> Iterator[ModelPolicy]:
    """Yield each window's model in order: trained when asked for here, all at once elsewhere."""
    if backend is None or isinstance(backend, LocalBackend):
        for window in windows:  # lazily: after a ruin the later windows are never trained
            yield train_window(job, window)
        return
    yield from backend.map(train_window, job, windows, label="walk-forward", progress=progress)


def _row(
    data: MarketData,
    window: Window,
    result: BacktestResult,
    bars_per_year: float,
    bar_days: float,
) -> dict[str, Any]:
    """Return what the report shows of one window's test."""
    m = compute_metrics(
        result.equity,
        result.exposure,
        result.traded_quote,
        result.fee_quote,
        result.impact_quote,
        result.gas_quote,
        result.swaps,
        bars_per_year,
        bar_days,
    )
    return {
        "window": window.index,
        "train_from": format_time_ms(int(data.open_time[window.train_start])),
        "test_from": format_time_ms(int(data.open_time[window.test_start])),
        "test_to": format_time_ms(int(data.open_time[window.test_end])),
        "test_bars": window.test_end - window.test_start,
        "total_return": json_number(m.total_return),
        "sharpe": json_number(m.sharpe),
        "max_drawdown": json_number(m.max_drawdown),
        "trades": m.trades,
        "final_equity": round(m.final_equity, 2),
        "fingerprint": result.fingerprint,
    }


def stitch(results: list[BacktestResult], name: str = "walk-forward") -> BacktestResult:
    """Join consecutive test runs into one result (each run starts where the last ended)."""
    if not results:
        raise ConfigError("walkforward: nothing to stitch")
    for before, after in itertools.pairwise(results):
        if after.start != before.start + before.decisions:
            raise ConfigError(
                f"walkforward: test windows are not contiguous ({before.start}+"
                f"{before.decisions} then {after.start})"
            )

    def join(attr: str, per_bar: bool) -> np.ndarray:
        parts = [getattr(r, attr) for r in results]
        if per_bar:
            parts = [parts[0], *(p[1:] for p in parts[1:])]
        return np.concatenate(parts)

    first = results[0]
    return BacktestResult(
        name=name,
        kind="model",
        start=first.start,
        open_time=join("open_time", True),
        close=join("close", True),
        equity=join("equity", True),
        target=join("target", False),
        exposure_before=join("exposure_before", False),
        exposure=join("exposure", False),
        side=join("side", False),
        traded_quote=join("traded_quote", False),
        fee_quote=join("fee_quote", False),
        impact_quote=join("impact_quote", False),
        gas_quote=join("gas_quote", False),
        base=join("base", False),
        quote=join("quote", False),
        reward=join("reward", False),
        terminated=any(r.terminated for r in results),
        extra={"windows": len(results)},
    )


def learn_trainer(settings: Settings, timesteps: int, algorithm: str = "ppo") -> LearnTrainer:
    """Return a trainer that fits a model as `agora train` does (see `LearnTrainer`)."""
    return LearnTrainer(settings, timesteps, algorithm)


@dataclass(frozen=True)
class LearnTrainer:
    """Fits a window's model as `agora train` does (agent.learn); pickles to a Ray worker.

    The environment and hyperparameters come from the `agent` section of the configuration
    (`EnvConfig.from_settings`, `agent.learn.train.hyperparameters`); torch runs
    deterministically with the window's seed; the policy is evaluated with `NumpyPolicy`.
    There is no validation checkpointing inside a window: the model after `timesteps` steps
    is the one tested. On-policy rollouts are capped at `timesteps` so small budgets stay small.
    """

    settings: Settings
    timesteps: int
    algorithm: str = "ppo"

    def __call__(
        self, data: MarketData, train_start: int, train_end: int, seed: int
    ) -> ModelPolicy:
        from stable_baselines3.common.utils import set_random_seed

        from agent.learn.inference import NumpyPolicy
        from agent.learn.train import (
            ALGORITHMS,
            action_kind,
            deterministic_torch,
            hyperparameters,
        )

        settings, algorithm, timesteps = self.settings, self.algorithm, self.timesteps
        base = EnvConfig.from_settings(settings, action_kind(algorithm, settings))
        first_bar = max(base.first_bar, train_start)
        if train_end - first_bar < 2:
            raise ConfigError(
                f"walkforward: training window [{train_start}, {train_end}) leaves no bars "
                f"after the warm-up of {base.first_bar}"
            )
        span = max(2, min(base.episode_bars, train_end - first_bar))
        cfg = replace(base, first_bar=first_bar, episode_bars=span)
        params = hyperparameters(settings, algorithm, timesteps)
        if "n_steps" in params:
            params["n_steps"] = max(8, min(params["n_steps"], timesteps))
            if "batch_size" in params:
                params["batch_size"] = min(params["batch_size"], params["n_steps"])
        try:
            with deterministic_torch():
                set_random_seed(seed)
                model = ALGORITHMS[algorithm](
                    "MlpPolicy", TradingEnv(data, cfg), seed=seed, device="cpu", verbose=0, **params
                )
                model.learn(total_timesteps=timesteps)
        except (ValueError, RuntimeError) as e:
            raise ModelError(f"walkforward: training {algorithm} failed: {e}") from e
        evaluation = replace(cfg, strategy_dropout=0.0, turnover_penalty=0.0)
        return ModelPolicy(f"{algorithm}-w{train_end}", NumpyPolicy.from_model(model), evaluation)
