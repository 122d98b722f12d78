"""`agora tune`: a hyper-parameter search with Ray Tune, chosen on validation, tested once.

Every trial trains `seeds_per_trial` seeds exactly as `agora train` does (`fit_seed`), with the
configuration changed only by the trial's values, and is scored on the validation split
alone (the study's metric, combined over the seeds by its objective). Ray Tune runs the
trials (as many at once as the cluster has CPUs for, `compute.cpus_per_task` each), with
Optuna's TPE sampler or Tune's own random search proposing them; a trial whose worker dies
is rerun (`compute.max_retries`). The data set goes to the workers once, through Ray's object
store; each trial's models come back through it to a collector actor on the driver.

Only when the search is over does the driver touch the test split: once, for the chosen
trial's best model. Then it writes the model files and, in one transaction, registers every
trial's model (with its study and trial id) and records the study and its trials
(`record_study`). An interrupted search (SIGINT) or a failed one leaves the store as it was.

Without Ray installed `agora tune` fails with one line naming `pip install 'agora[ray]'`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.compute import require_ray
from agent.config import Settings
from agent.env.trading_env import EnvConfig
from agent.errors import ConfigError, ModelError
from agent.learn import registry
from agent.learn.dataset import Dataset, load_dataset
from agent.learn.diagnostics import WindowMetrics
from agent.learn.inference import NumpyPolicy
from agent.learn.space import SearchSpace, settings_with
from agent.learn.train import (
    ALGORITHMS,
    FittedSeed,
    _eval_config,
    action_kind,
    fit_seed,
    masked_message,
    measure_test_split,
    model_record,
)
from agent.store import Store


@dataclass(frozen=True)
class TrialJob:
    """What every trial reads (sent once through the object store)."""

    dataset: Dataset
    settings: Settings
    space: SearchSpace
    algorithm: str
    collector: Any
    """The driver's collector actor: trials hand their models to it."""


@dataclass(frozen=True)
class Trial:
    """One finished (or failed) trial."""

    number: int
    trial_id: str
    params: dict[str, Any]
    status: str
    """ok, or error (then `error` says why and there is no model)."""
    score: float | None
    seeds: list[FittedSeed] = field(repr=False)
    seconds: float
    finished_ms: int
    error: str | None = None

    @property
    def model_ids(self) -> list[str]:
        return [registry.model_id(seed.blob) for seed in self.seeds]

    def as_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "trial_id": self.trial_id,
            "params": self.params,
            "status": self.status,
            "score": self.score,
            "validation": [s.validation.as_dict() for s in self.seeds],
            "model_ids": self.model_ids,
            "seconds": self.seconds,
            "finished_ms": self.finished_ms,
            "error": self.error,
        }


@dataclass(frozen=True)
class Study:
    """A finished search: every trial, the chosen one and its test split, measured once."""

    id: str
    space: SearchSpace
    algorithm: str
    timesteps: int
    backend: str
    config_hash: str
    data_hash: str
    strategies: list[str]
    started_ms: int
    seconds: float
    trials: list[Trial]
    chosen: Trial | None
    chosen_model: str | None
    test: WindowMetrics | None
    baselines: dict[str, float]
    dataset: Dataset = field(repr=False, compare=False)

    @property
    def best_params(self) -> dict[str, Any]:
        return {} if self.chosen is None else dict(self.chosen.params)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.space.name,
            "space": self.space.as_dict(),
            "space_path": self.space.path,
            "algorithm": self.algorithm,
            "timesteps": self.timesteps,
            "backend": self.backend,
            "config_hash": self.config_hash,
            "data_hash": self.data_hash,
            "strategies": self.strategies,
            "started_ms": self.started_ms,
            "seconds": self.seconds,
            "trials": [t.as_dict() for t in self.trials],
            "chosen_trial": None if self.chosen is None else self.chosen.trial_id,
            "chosen_model": self.chosen_model,
            "best_params": self.best_params,
            "test": None if self.test is None else self.test.as_dict(),
            "baselines": self.baselines,
        }


# --- on a worker ------------------------------------------------------------------------------
def run_trial(config: dict[str, Any], job: TrialJob) -> None:
    """One trial, as a Ray Tune function trainable: train its seeds, report the score."""
    import ray
    from ray import tune

    started = time.perf_counter()
    params = {p.key: p.decode(config[p.name]) for p in job.space.parameters}
    settings = settings_with(job.settings, params, source="trial")
    steps = trial_timesteps(job.space, job.settings, params)
    fitted = [
        fit_seed(
            job.dataset,
            settings,
            algorithm=job.algorithm,
            seed=job.settings.agent.seed + offset,
            timesteps=steps,
            measure_test=False,
        )
        for offset in range(job.space.seeds_per_trial)
    ]
    trial_id = tune.get_context().get_trial_id()
    ray.get(job.collector.put.remote(trial_id, fitted))
    score = objective(job.space, fitted)
    tune.report({"score": score, "seconds": time.perf_counter() - started})


def objective(space: SearchSpace, fitted: list[FittedSeed]) -> float:
    """A trial's score: its seeds' validation metric, combined by the study's objective."""
    values = [float(getattr(f.validation, space.metric)) for f in fitted]
    return min(values) if space.objective == "min" else statistics.fmean(values)


def trial_timesteps(space: SearchSpace, settings: Settings, params: Mapping[str, Any]) -> int:
    """Steps per seed: the trial's own value if searched, else the space's, else the config's."""
    if "agent.timesteps" in params:
        return int(params["agent.timesteps"])
    return space.timesteps or settings.agent.timesteps


# --- on the driver ----------------------------------------------------------------------------
def search(
    settings: Settings,
    store: Store,
    space: SearchSpace,
    *,
    algorithm: str | None = None,
    allow_masked_strategies: bool = False,
    progress: bool = False,
) -> Study:
    """Run the search on the stored configured market; nothing is written (`record_study`).

    Raises:
        ConfigError: Ray is not installed, or a strategy gives no signal and masking was not
            allowed.
        ModelError: every trial failed.
    """
    require_ray("agora tune")
    algorithm = (algorithm or settings.agent.algorithm).lower()
    if algorithm not in ALGORITHMS:
        raise ModelError(f"unknown algorithm {algorithm!r}; expected one of {sorted(ALGORITHMS)}")
    dataset = load_dataset(store, settings)
    if dataset.reasons and not allow_masked_strategies:
        raise ConfigError(masked_message(dataset.reasons))
    from agent.compute.ray_backend import connected

    compute = settings.compute
    if compute.backend == "local":  # Tune needs Ray: one on this machine, for this command
        compute = compute.model_copy(update={"address": None})
    started_ms, started = int(time.time() * 1000), time.perf_counter()
    study_id = uuid.uuid4().hex[:12]
    with connected(compute) as backend:
        trials = _run_trials(settings, dataset, space, algorithm, backend.workers, progress)
    done = [t for t in trials if t.status == "ok" and t.score is not None]
    if not done:
        reasons = "; ".join(sorted({str(t.error) for t in trials}))[:500]
        raise ModelError(f"agora tune: every trial failed: {reasons}")
    chosen = max(done, key=lambda t: (t.score, -t.number))
    best = max(chosen.seeds, key=lambda s: float(getattr(s.validation, space.metric)))
    chosen_settings = settings_with(settings, chosen.params, source="chosen trial")
    evaluation = _eval_config(
        EnvConfig.from_settings(chosen_settings, action_kind(algorithm, chosen_settings))
    )
    test, baselines = measure_test_split(dataset, NumpyPolicy.load(best.blob), evaluation)
    return Study(
        id=study_id,
        space=space,
        algorithm=algorithm,
        timesteps=trial_timesteps(space, settings, {}),
        backend=f"ray ({compute.address or 'started here'})",
        config_hash=settings.config_hash(),
        data_hash=dataset.data_hash,
        strategies=list(dataset.strategy_names),
        started_ms=started_ms,
        seconds=time.perf_counter() - started,
        trials=trials,
        chosen=chosen,
        chosen_model=registry.model_id(best.blob),
        test=test,
        baselines={**best.baselines, **baselines},
        dataset=dataset,
    )


def _run_trials(
    settings: Settings,
    dataset: Dataset,
    space: SearchSpace,
    algorithm: str,
    workers: int,
    progress: bool,
) -> list[Trial]:
    import ray
    from ray import tune

    from agent.compute.ray_backend import exit_on_interrupt

    collector: Any = ray.remote(num_cpus=0)(Collector).remote()
    job = TrialJob(dataset, settings, space, algorithm, collector)
    resources: dict[str, float] = {"cpu": settings.compute.cpus_per_task}
    if settings.compute.memory_mb_per_task is not None:
        resources["memory"] = settings.compute.memory_mb_per_task * 1024 * 1024
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job), resources)
    concurrent = min(space.max_concurrent or workers, space.trials)
    with tempfile.TemporaryDirectory(prefix="agora-tune-") as storage, _quiet():
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(space),
            tune_config=tune.TuneConfig(
                search_alg=_searcher(space, concurrent),
                num_samples=space.trials,
                metric="score",
                mode="max",
                max_concurrent_trials=concurrent,
                reuse_actors=True,  # a worker keeps torch and the kernel loaded between trials
            ),
            run_config=tune.RunConfig(
                storage_path=storage,
                name="agora-tune",
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=settings.compute.max_retries),
                callbacks=[_progress_callback(space)] if progress else None,
            ),
        )
        with exit_on_interrupt(lambda: shutil.rmtree(storage, ignore_errors=True)):
            grid = tuner.fit()
        models: dict[str, list[FittedSeed]] = ray.get(collector.take.remote())
    trials = []
    results: list[Any] = [grid[index] for index in range(len(grid))]
    for number, result in enumerate(results, start=1):
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id") or (result.path or "").rsplit("_", 1)[-1])
        params = {p.key: p.decode(result.config[p.name]) for p in space.parameters}
        seeds = models.get(trial_id, [])
        failed = result.error is not None or "score" not in metrics or not seeds
        trials.append(
            Trial(
                number=number,
                trial_id=trial_id,
                params=params,
                status="error" if failed else "ok",
                score=None if failed else float(metrics["score"]),
                seeds=[] if failed else seeds,
                seconds=float(metrics.get("time_total_s") or 0.0),
                finished_ms=int(float(metrics.get("timestamp") or 0) * 1000),
                error=_first_line(result.error) if failed else None,
            )
        )
    return trials


def _param_space(space: SearchSpace) -> dict[str, Any]:
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.parameters:
        low, high = p.values[0], p.values[-1]
        if p.kind == "uniform":
            out[p.name] = tune.uniform(low, high)
        elif p.kind == "loguniform":
            out[p.name] = tune.loguniform(low, high)
        elif p.kind == "int":
            out[p.name] = tune.randint(low, high + 1)  # Tune's high is exclusive
        else:
            out[p.name] = tune.choice([p.encode(v) for v in p.values])
    return out


def _searcher(space: SearchSpace, concurrent: int) -> Any:
    if space.searcher == "random":
        from ray.tune.search.basic_variant import BasicVariantGenerator

        return BasicVariantGenerator(random_state=space.seed, max_concurrent=concurrent)
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return OptunaSearch(sampler=optuna.samplers.TPESampler(seed=space.seed))


def _progress_callback(space: SearchSpace) -> Any:
    """One line on stderr per finished trial (Tune pickles its callbacks: no console here)."""
    from ray.tune import Callback

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    class Progress(Callback):
        def __init__(self) -> None:
            self.finished = 0
            self.best: float | None = None

        def on_trial_complete(
            self, iteration: int, trials: list[Any], trial: Any, **_: Any
        ) -> None:
            self.finished += 1
            score = (trial.last_result or {}).get("score")
            if score is not None and (self.best is None or score > self.best):
                self.best = score
            shown = "no score" if score is None else f"score {score:+.5f}"
            best = "" if self.best is None else f" (best {self.best:+.5f})"
            report(f"trial {self.finished}/{space.trials} {trial.trial_id}: {shown}{best}")

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **_: Any) -> None:
            self.finished += 1
            report(f"trial {self.finished}/{space.trials} {trial.trial_id}: failed")

    return Progress()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Tune's console output off stdout (results go there) and its SIGINT handler off
    (an interrupt must stop the command, not end the search early and record it)."""
    saved = {k: os.environ.get(k) for k in _TUNE_ENV}
    os.environ.update(_TUNE_ENV)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_TUNE_ENV = {
    "TUNE_DISABLE_SIGINT_HANDLER": "1",  # `exit_on_interrupt` handles SIGINT
    "RAY_AIR_NEW_OUTPUT": "0",
}


def _first_line(error: Any) -> str:
    text = str(error).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


class Collector:
    """Holds each trial's models until the driver takes them (a rerun trial replaces its own);
    a Ray actor on the driver's cluster, made remote where it is started (Ray is optional)."""

    def __init__(self) -> None:
        self.models: dict[str, list[FittedSeed]] = {}

    def put(self, trial_id: str, fitted: list[FittedSeed]) -> None:
        self.models[trial_id] = fitted

    def take(self) -> dict[str, list[FittedSeed]]:
        return self.models


# --- recording --------------------------------------------------------------------------------
def record_study(
    store: Store, settings: Settings, study: Study, *, report_path: str | None = None
) -> list[registry.ModelRecord]:
    """Write every trial's model file, then register them and record the study, all at once."""
    directory = registry.models_dir(settings)
    records = []
    for trial in study.trials:
        trial_settings = settings_with(settings, trial.params, source=f"trial {trial.trial_id}")
        for fitted in trial.seeds:
            chosen = registry.model_id(fitted.blob) == study.chosen_model
            run = fitted.written(directory, test=study.test if chosen else None)
            extra = {
                "tune": {
                    "study": study.id,
                    "name": study.space.name,
                    "trial": trial.trial_id,
                    "params": trial.params,
                    "score": trial.score,
                    "chosen": chosen,
                }
            }
            if chosen:
                run = run.with_baselines(study.baselines)
            steps = trial_timesteps(study.space, settings, trial.params)
            records.append(
                model_record(run, study.dataset, trial_settings, study.algorithm, steps, extra)
            )
    document = study.as_dict()
    with store.transaction("recording a tune study") as conn:
        registry.insert_records(conn, records)
        conn.execute(
            "INSERT INTO tune_studies (id, name, space_path, space_hash, started_ms, seconds, "
            "backend, chosen_trial, chosen_model, document, report_path) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                study.id,
                study.space.name,
                study.space.path,
                study.space.space_hash,
                study.started_ms,
                study.seconds,
                study.backend,
                document["chosen_trial"],
                study.chosen_model,
                json.dumps(document, default=float),  # the space's keys in the file's order
                report_path,
            ],
        )
        conn.executemany(
            "INSERT INTO tune_trials (study_id, number, trial_id, status, score, params, "
            "model_ids, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                [
                    study.id,
                    t.number,
                    t.trial_id,
                    t.status,
                    t.score,
                    json.dumps(t.params, sort_keys=True),
                    json.dumps(t.model_ids),
                    t.error,
                ]
                for t in study.trials
            ],
        )
    return [registry.show(store, r.id) for r in records]
