"""Train the agent with stable-baselines3, choose the checkpoint on validation only, measure once.

One seed's run: build the training environment on the train split (random episodes, strategy
dropout, rewards scaled by `agent.reward_scale`), learn for `agent.timesteps` steps, and every
`agent.eval_every_steps` (and at the end) run the deterministic policy over the whole
validation window; a checkpoint is kept when its validation net log return beats the kept one
(at first: staying flat) by `agent.selection_margin` standard errors (see
`ValidationCallback`). Only then is the kept model run once over the test split. The test
split is never touched while training or choosing, so its numbers are an honest estimate.

Reproducibility. Each run seeds Python, numpy and torch (`set_random_seed`) and the
environment, and runs torch single-threaded with deterministic algorithms, so the same seed,
data and configuration give the same weights and, through the byte-stable file format of
`agent.learn.registry`, the same model id.

Side effects (progress bar, evaluation lines on stderr, checkpoints) live in SB3 callbacks.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import A2C, DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv

from agent.compute import Backend
from agent.config import Settings
from agent.env.features import FEATURE_NAMES
from agent.env.rollout import ModelPolicy, RolloutResult, buy_and_hold, rollout
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.errors import ConfigError, ModelError, TrainingInterrupted
from agent.learn import registry
from agent.learn.dataset import Dataset, load_dataset
from agent.learn.diagnostics import (
    TrainingPoint,
    WindowMetrics,
    degenerate_warnings,
    paired_advantage,
    strategy_turnover,
    window_metrics,
)
from agent.learn.inference import NumpyPolicy
from agent.store import Store

Algorithm = Literal["ppo", "a2c", "dqn", "sac"]
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC}
SUMMARY_METRICS: tuple[str, ...] = ("log_return", "total_return", "cost_fraction", "trades")


def action_kind(algorithm: str, settings: Settings) -> Literal["discrete", "continuous"]:
    """Return the action space a run uses: DQN is discrete, SAC continuous, others configured."""
    if algorithm == "dqn":
        return "discrete"
    if algorithm == "sac":
        return "continuous"
    return settings.agent.action


def hyperparameters(settings: Settings, algorithm: str, timesteps: int) -> dict[str, Any]:
    """Return the SB3 constructor arguments of `algorithm` (besides policy, env and seed)."""
    agent = settings.agent
    common: dict[str, Any] = {
        "learning_rate": agent.learning_rate,
        "gamma": agent.gamma,
        "policy_kwargs": {"net_arch": list(agent.net_arch)},
    }
    if algorithm == "ppo":
        return {
            **common,
            "n_steps": agent.n_steps,
            "batch_size": min(agent.batch_size, agent.n_steps),  # a minibatch is within a rollout
            "ent_coef": agent.ent_coef,
        }
    if algorithm == "a2c":
        return {**common, "n_steps": agent.n_steps, "ent_coef": agent.ent_coef}
    off_policy = {
        **common,
        "batch_size": agent.batch_size,
        "buffer_size": max(1, min(agent.buffer_size, timesteps)),
        "learning_starts": agent.learning_starts,
    }
    if algorithm == "dqn":
        return {**off_policy, "target_update_interval": max(1, min(10_000, timesteps // 10))}
    if algorithm == "sac":
        return off_policy
    raise ModelError(f"unknown algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")


def env_parameters(settings: Settings, algorithm: str) -> dict[str, Any]:
    """Return the environment settings a model is trained with (recorded with it)."""
    agent = settings.agent
    return {
        "action": action_kind(algorithm, settings),
        "exposure_levels": list(agent.exposure_levels),
        "lookback_bars": agent.lookback_bars,
        "episode_bars": agent.episode_bars,
        "strategy_dropout": agent.strategy_dropout,
        "turnover_penalty": agent.turnover_penalty,
        "reward_scale": agent.reward_scale,
        "initial_value_quote": agent.initial_value_quote,
    }


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """Run torch single-threaded with deterministic kernels, restoring the settings after."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


class _ScaleReward(gym.RewardWrapper[np.ndarray, Any]):
    """Multiply the training reward (log returns per bar are ~1e-3; critics like ~1)."""

    def __init__(self, env: gym.Env[np.ndarray, Any], scale: float) -> None:
        super().__init__(env)
        self.scale = scale

    def reward(self, reward: Any) -> float:
        return float(reward) * self.scale


# --- callbacks ------------------------------------------------------------------------------
class ValidationCallback(BaseCallback):
    """Evaluate on the validation window every `every` steps and keep the checkpoint to ship.

    Selection. The kept policy starts as "stay flat" (no trade). A checkpoint replaces it only
    if its validation net log return is higher by at least `margin` standard errors of the
    paired per-bar difference (the two policies face the same bars, so the market's own noise
    mostly cancels where they hold the same exposure). Taking the plain maximum instead would
    reward luck: among checkpoints with no real edge, the one that churned into a few lucky
    trades wins. If no checkpoint beats staying flat, the one that paid the least in costs is
    kept (ties: the higher return, then the earlier). Checkpoints are kept as canonical model
    file bytes, so the kept model is exactly what was evaluated. `history` records the
    training reward next to each evaluation (for the reward-versus-value diagnostic).
    """

    def __init__(
        self,
        data: MarketData,
        config: EnvConfig,
        start: int,
        end: int,
        every: int,
        metadata: dict[str, Any],
        *,
        margin: float = 1.0,
        report: Any = None,
    ) -> None:
        super().__init__()
        self.eval_data, self.eval_config = data, config
        self.start, self.end, self.every = start, end, every
        self.metadata = metadata
        self.margin = margin
        self.report = report
        self.best_step = 0
        self.best_bytes: bytes | None = None
        self.best_metrics: WindowMetrics | None = None
        self.history: list[TrainingPoint] = []
        self._kept_returns: np.ndarray | None = None  # None: staying flat
        self._cheapest: tuple[float, float, int, bytes, WindowMetrics] | None = None
        self._last_eval = 0
        self.stop: Callable[[], bool] | None = None
        """When it returns true, no more evaluations (training is being abandoned)."""

    def _on_step(self) -> bool:
        if self.stop is not None and self.stop():
            return False
        if self.num_timesteps - self._last_eval >= self.every:
            self._evaluate()
        return True

    def _on_training_end(self) -> None:
        if self.stop is not None and self.stop():
            return
        if self.num_timesteps != self._last_eval or not self.history:
            self._evaluate()
        if self.best_bytes is None and self._cheapest is not None:
            _, _, self.best_step, self.best_bytes, self.best_metrics = self._cheapest

    def _evaluate(self) -> None:
        self._last_eval = step = self.num_timesteps
        policy = NumpyPolicy.from_model(self.model)
        trajectory = evaluate(self.eval_data, policy, self.eval_config, self.start, self.end)
        metrics = window_metrics(trajectory)
        buffer: Any = self.model.ep_info_buffer or []
        train_reward = float(np.mean([e["r"] for e in buffer])) if buffer else math.nan
        self.history.append(TrainingPoint(step, train_reward, metrics.log_return))
        kept = self._kept_returns
        advantage = paired_advantage(trajectory.reward, kept)
        checkpoint: bytes | None = None
        if advantage >= self.margin and advantage > 0:
            checkpoint = registry.model_bytes(self.model, self.metadata)
            self._kept_returns = trajectory.reward.copy()
            self.best_step, self.best_bytes, self.best_metrics = step, checkpoint, metrics
        rank = (-metrics.cost_fraction, metrics.log_return)
        if self._cheapest is None or rank > (-self._cheapest[0], self._cheapest[1]):
            checkpoint = checkpoint or registry.model_bytes(self.model, self.metadata)
            self._cheapest = (metrics.cost_fraction, metrics.log_return, step, checkpoint, metrics)
        if self.report is not None:
            verdict = "kept" if self.best_step == step else f"{advantage:+.1f} SE vs kept"
            self.report(
                f"step {step}: validation return {metrics.total_return:+.2%}, "
                f"{metrics.trades} trades, costs {metrics.cost_fraction:.2%} ({verdict})"
            )


class ProgressCallback(BaseCallback):
    """A progress bar on stderr (shown only when stderr is a terminal)."""

    def __init__(self, total: int, label: str) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        console = Console(stderr=True)
        self.bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.bar.add_task(label, total=total)

    def _on_training_start(self) -> None:
        self.bar.start()

    def _on_step(self) -> bool:
        if self.num_timesteps % 256 == 0:
            self.bar.update(self.task, completed=self.num_timesteps)
        return True

    def _on_training_end(self) -> None:
        self.bar.update(self.task, completed=self.num_timesteps)
        self.bar.stop()


# --- results --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SeedResult:
    """One trained seed: its kept model and what it achieved.

    Attributes:
        seed: the training seed.
        model_id: sha256 of the kept model's file.
        path: the model file.
        best_step: the training step of the kept checkpoint.
        validation: metrics over the validation window (what chose the checkpoint).
        test: metrics over the test split, computed once after training (None for a tuning
            trial's model that was not chosen: its test split is never looked at).
        baselines: buy-and-hold and flat total returns on validation and test, costs included.
        warnings: degenerate-agent warnings (from the validation run and training history).
        seconds: wall time of the run.
    """

    seed: int
    model_id: str
    path: str
    best_step: int
    validation: WindowMetrics
    test: WindowMetrics | None
    baselines: dict[str, float]
    warnings: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_baselines(self, baselines: Mapping[str, float]) -> SeedResult:
        return replace(self, baselines={**self.baselines, **baselines})


@dataclass(frozen=True)
class TrainReport:
    """Every seed of one `train` call, with the mean and spread of their metrics."""

    algorithm: str
    timesteps: int
    data_hash: str
    config_hash: str
    strategies: list[str]
    runs: list[SeedResult]
    summary: dict[str, dict[str, float]] = field(default_factory=dict)
    masked: dict[str, str] = field(default_factory=dict)
    """Strategies that gave no signal at all (masked throughout), with the reason."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(runs: Sequence[SeedResult]) -> dict[str, dict[str, float]]:
    """Return mean, standard deviation (0 for one seed), min and max of the key metrics."""
    summary = {}
    for split in ("validation", "test"):
        for name in SUMMARY_METRICS:
            values = [float(getattr(getattr(run, split), name)) for run in runs]
            summary[f"{split}.{name}"] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values),
                "max": max(values),
            }
    return summary


# --- training -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FittedSeed:
    """What training one seed returns, wherever it ran: the kept model as bytes (the driver
    writes the file) and what it achieved. `test` is None when the test split was not
    looked at (a tuning trial: only the chosen trial's model is tested, once)."""

    seed: int
    blob: bytes
    best_step: int
    validation: WindowMetrics
    test: WindowMetrics | None
    baselines: dict[str, float]
    warnings: list[str]
    seconds: float

    def written(self, directory: Path, *, test: WindowMetrics | None = None) -> SeedResult:
        """Write the model file into `directory` and return the seed's result (with `test`,
        measured afterwards, when the seed's own run did not measure it)."""
        model_id, path = registry.write_model_file(self.blob, directory)
        return SeedResult(
            seed=self.seed,
            model_id=model_id,
            path=str(path),
            best_step=self.best_step,
            validation=self.validation,
            test=self.test or test,
            baselines=self.baselines,
            warnings=self.warnings,
            seconds=self.seconds,
        )


@dataclass(frozen=True)
class FitJob:
    """The shared input of every seed's task: sent once (Ray's object store), read by all."""

    dataset: Dataset
    settings: Settings
    algorithm: str
    timesteps: int
    measure_test: bool = True


def fit_task(job: FitJob, seed: int) -> FittedSeed:
    """One seed as a compute task (`agent.compute`): pure, so a rerun gives the same bytes."""
    return fit_seed(
        job.dataset,
        job.settings,
        algorithm=job.algorithm,
        seed=seed,
        timesteps=job.timesteps,
        measure_test=job.measure_test,
    )


def fit_seed(
    dataset: Dataset,
    settings: Settings,
    *,
    algorithm: str,
    seed: int,
    timesteps: int,
    progress: bool = False,
    stop: Callable[[], bool] | None = None,
    measure_test: bool = True,
) -> FittedSeed:
    """Train one seed on `dataset`, keep the checkpoint validation chooses, test it once.

    Writes nothing: the kept model comes back as bytes.

    Raises:
        TrainingInterrupted: `stop()` became true (checked at every step).
    """
    started = time.perf_counter()
    kind = action_kind(algorithm, settings)
    config = EnvConfig.from_settings(settings, kind)
    train_data, _, _ = dataset.env_data("train")
    validation_data, val_start, val_end = dataset.env_data("validation")
    metadata = model_metadata(dataset, settings, algorithm)
    report = _stderr_reporter(f"seed {seed}") if progress else None
    with deterministic_torch():
        set_random_seed(seed)
        train_env = TradingEnv(train_data, config)
        vec_env = DummyVecEnv(
            [lambda: _ScaleReward(Monitor(train_env), settings.agent.reward_scale)]
        )
        model = ALGORITHMS[algorithm](
            "MlpPolicy",
            vec_env,
            seed=seed,
            device="cpu",
            verbose=0,
            **hyperparameters(settings, algorithm, timesteps),
        )
        validation = ValidationCallback(
            validation_data,
            _eval_config(config),
            val_start,
            val_end,
            settings.agent.eval_every_steps,
            metadata,
            margin=settings.agent.selection_margin,
            report=report,
        )
        validation.stop = stop
        callbacks: list[BaseCallback] = [validation]
        if progress:
            callbacks.append(ProgressCallback(timesteps, f"training {algorithm} seed {seed}"))
        model.learn(total_timesteps=timesteps, callback=CallbackList(callbacks))
    if stop is not None and stop():
        raise TrainingInterrupted(f"training seed {seed} was stopped at step {model.num_timesteps}")
    if validation.best_bytes is None or validation.best_metrics is None:
        raise ModelError(f"training seed {seed} produced no checkpoint")
    best = NumpyPolicy.load(validation.best_bytes)
    evaluation = _eval_config(config)
    validation_run = evaluate(validation_data, best, evaluation, val_start, val_end)
    window = dataset.windows["validation"]
    turnover = strategy_turnover(
        dataset.data.signals[window.start : window.end],
        dataset.data.mask[window.start : window.end],
    )
    warnings = degenerate_warnings(
        validation_run, strategy_turnover_per_bar=turnover, history=validation.history
    )
    baselines = {
        "validation.buy_and_hold": _total(
            rollout(validation_data, buy_and_hold(validation_data), evaluation, val_start, val_end)
        ),
        "validation.flat": 0.0,
    }
    test = None
    if measure_test:  # the test split, looked at once, with the kept model
        test, test_baselines = measure_test_split(dataset, best, evaluation)
        baselines.update(test_baselines)
    return FittedSeed(
        seed=seed,
        blob=validation.best_bytes,
        best_step=validation.best_step,
        validation=window_metrics(validation_run),
        test=test,
        baselines=baselines,
        warnings=warnings,
        seconds=time.perf_counter() - started,
    )


def measure_test_split(
    dataset: Dataset, policy: Any, evaluation: EnvConfig
) -> tuple[WindowMetrics, dict[str, float]]:
    """Run a kept model over the test split: its metrics, and buy-and-hold's and flat's."""
    test_window = dataset.windows["test"]
    start, end = test_window.start, test_window.end - 1
    metrics = window_metrics(evaluate(dataset.data, policy, evaluation, start, end))
    hold = _total(rollout(dataset.data, buy_and_hold(dataset.data), evaluation, start, end))
    return metrics, {"test.buy_and_hold": hold, "test.flat": 0.0}


def train_seed(
    dataset: Dataset,
    settings: Settings,
    *,
    algorithm: str,
    seed: int,
    timesteps: int,
    directory: Path,
    progress: bool = False,
    stop: Callable[[], bool] | None = None,
) -> SeedResult:
    """Train one seed (`fit_seed`) and write its kept model into `directory`."""
    fitted = fit_seed(
        dataset,
        settings,
        algorithm=algorithm,
        seed=seed,
        timesteps=timesteps,
        progress=progress,
        stop=stop,
    )
    return fitted.written(directory)


def train(
    settings: Settings,
    store: Store | None = None,
    *,
    dataset: Dataset | None = None,
    algorithm: str | None = None,
    seeds: int | None = None,
    timesteps: int | None = None,
    progress: bool = False,
    allow_masked_strategies: bool = False,
    stop: Callable[[], bool] | None = None,
    backend: Backend | None = None,
) -> TrainReport:
    """Train `seeds` seeds (`agora train`), register the kept models, report mean and spread.

    The seeds run in this process one after the other, or as tasks of `backend` (Ray: one
    task per seed; the same seed gives the same model id either way). Model files are
    written and models registered only once every seed has finished, in one transaction: an
    interrupted or failed run leaves the store as it was.

    Args:
        settings: the configuration (the `agent` section above all).
        store: the database: candles come from it (unless `dataset` is given) and the models
            are registered in it; without it nothing is registered.
        dataset: train on this data set instead of the stored configured market.
        algorithm: ppo, a2c, dqn or sac (default `agent.algorithm`).
        seeds: how many seeds, from `agent.seed` on (default `agent.seeds`).
        timesteps: steps per seed (default `agent.timesteps`).
        progress: show a progress bar and one line per evaluation on stderr (in this
            process), or a line per finished seed (on another backend).
        allow_masked_strategies: train even when a strategy gives no signal at all (it is
            masked throughout, so the model never sees it); by default that is refused.
        stop: checked at every training step; when it returns true, training ends at once and
            nothing is registered (the service's SIGTERM). Training then runs in this process.
        backend: where the seeds run (default: this process).

    Raises:
        TrainingInterrupted: `stop()` became true.
        ModelError: training failed.
        DataError: no candles, or too few for the split.
        ConfigError: a strategy gives no signal and masking was not allowed.
    """
    algorithm = (algorithm or settings.agent.algorithm).lower()
    if algorithm not in ALGORITHMS:
        raise ModelError(f"unknown algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")
    n_seeds = seeds or settings.agent.seeds
    steps = timesteps or settings.agent.timesteps
    if dataset is None:
        if store is None:
            raise ModelError("train needs a store or a dataset")
        dataset = load_dataset(store, settings)
    if dataset.reasons and not allow_masked_strategies:
        raise ConfigError(masked_message(dataset.reasons))
    seed_list = [settings.agent.seed + offset for offset in range(n_seeds)]
    if backend is None or backend.name == "local" or stop is not None:
        fitted = [
            fit_seed(
                dataset,
                settings,
                algorithm=algorithm,
                seed=seed,
                timesteps=steps,
                progress=progress,
                stop=stop,
            )
            for seed in seed_list
        ]
    else:
        job = FitJob(dataset, settings, algorithm, steps)
        report = _stderr_reporter("train") if progress else None
        fitted = backend.map(
            fit_task,
            job,
            seed_list,
            label="agora-train",
            progress=None if report is None else lambda d, n: report(f"{d}/{n} seeds trained"),
        )
    directory = registry.models_dir(settings)
    runs = [f.written(directory) for f in fitted]
    if store is not None:
        registry.register_all(
            store, [model_record(run, dataset, settings, algorithm, steps) for run in runs]
        )
    return TrainReport(
        algorithm=algorithm,
        timesteps=steps,
        data_hash=dataset.data_hash,
        config_hash=settings.config_hash(),
        strategies=list(dataset.strategy_names),
        runs=runs,
        summary=summarise(runs),
        masked=dict(dataset.reasons or {}),
    )


def masked_message(reasons: Mapping[str, str]) -> str:
    """One line naming every strategy without a signal, why, and the ways out."""
    failed = "; ".join(f"{name} ({' '.join(reason.split())})" for name, reason in reasons.items())
    return (
        f"agent.strategies: no signal from {failed}: the agent would train with "
        f"{'it' if len(reasons) == 1 else 'them'} masked throughout; fix or remove "
        f"{'it' if len(reasons) == 1 else 'them'}, or allow it with --allow-masked-strategies"
    )


def model_metadata(dataset: Dataset, settings: Settings, algorithm: str) -> dict[str, Any]:
    """Return what a model file says about the observation its policy expects (its spec)."""
    spec = EnvConfig.from_settings(settings, action_kind(algorithm, settings)).spec(
        dataset.strategy_names
    )
    return {"algorithm": algorithm, "features": list(FEATURE_NAMES), **spec.to_metadata()}


def model_record(
    run: SeedResult,
    dataset: Dataset,
    settings: Settings,
    algorithm: str,
    timesteps: int,
    extra: Mapping[str, Any] | None = None,
) -> registry.ModelRecord:
    """Return the registry record of a trained seed (`extra`: more metrics, e.g. its trial)."""
    key = dataset.key
    return registry.ModelRecord(
        id=run.model_id,
        created_ms=int(time.time() * 1000),
        algorithm=algorithm,
        series={}
        if key is None
        else {"source": key.source, "symbol": key.symbol, "timeframe": key.timeframe},
        hyperparameters={
            **hyperparameters(settings, algorithm, timesteps),
            "timesteps": timesteps,
            "eval_every_steps": settings.agent.eval_every_steps,
            "env": env_parameters(settings, algorithm),
            "split": settings.agent.split.model_dump(),
        },
        config_hash=settings.config_hash(),
        data_hash=dataset.data_hash,
        strategies=list(dataset.strategy_names),
        seeds=[run.seed],
        metrics={
            "best_step": run.best_step,
            "validation": run.validation.as_dict(),
            **({} if run.test is None else {"test": run.test.as_dict()}),
            "baselines": run.baselines,
            "warnings": run.warnings,
            "windows": {name: w.as_dict() for name, w in dataset.windows.items()},
            **(extra or {}),
        },
        path=run.path,
    )


def _eval_config(config: Any) -> Any:
    """Evaluation sees every strategy (no dropout) and scores value only (no penalty)."""
    from dataclasses import replace

    return replace(config, strategy_dropout=0.0, turnover_penalty=0.0)


def _total(result: RolloutResult) -> float:
    return window_metrics(result).total_return


def evaluate(
    data: MarketData, predict: Any, config: EnvConfig, start: int, end: int
) -> RolloutResult:
    """Run a policy deterministically over decisions start .. end - 1 (the one rollout)."""
    return rollout(data, ModelPolicy("candidate", predict, config), config, start, end)


def _stderr_reporter(prefix: str) -> Any:
    from rich.console import Console

    console = Console(stderr=True, soft_wrap=True)

    def report(line: str) -> None:
        console.print(f"{prefix}: {line}", markup=False, highlight=False)

    return report
