"""A hyper-parameter search space: the YAML file `agora tune` reads (tune/*.yaml).

    name: planted-edge          # names the study in the store and the report
    trials: 16                  # trials sampled
    searcher: optuna            # optuna (TPE, seeded) | random (Tune's own random search)
    seed: 0                     # the searcher's seed
    seeds_per_trial: 1          # training seeds of every trial, from agent.seed on
    objective: mean             # how a trial's seeds' validation scores combine: mean | min
    metric: log_return          # the validation metric maximised (log_return | total_return |
                                #   sharpe | reward_sum)
    timesteps: null             # steps per seed (null: agent.timesteps, or the space's value)
    max_concurrent: null        # trials at once (null: as many as the cluster has CPUs for)
    space:                      # config keys of the agent section, each one distribution
      agent.learning_rate: {loguniform: [0.0001, 0.001]}
      agent.turnover_penalty: {uniform: [0.0, 0.006]}
      agent.lookback_bars: {int: [2, 16]}
      agent.exposure_levels: {choice: [[0.0, 1.0], [0.0, 0.5, 1.0]]}

Every key and every value a trial could take is checked against the configuration's own
schema before anything runs, so a bad space fails at once with the file, the key and what is
allowed. Only `agent.*` keys that do not change what trials are compared on may be searched:
the strategies, the split and the seeds are fixed for a study.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from agent.config import Settings, format_validation_error, read_yaml
from agent.errors import ConfigError

Kind = Literal["uniform", "loguniform", "int", "choice"]
KINDS: tuple[Kind, ...] = ("uniform", "loguniform", "int", "choice")
METRICS = ("log_return", "total_return", "sharpe", "reward_sum")
"""Validation metrics a study may maximise (`agent.learn.diagnostics.WindowMetrics`)."""
FIXED_KEYS = frozenset({"strategies", "split", "seed", "seeds", "algorithm", "action"})
"""Agent keys a study may not search: they change what the trials are compared on."""
TOP_KEYS = frozenset(
    {"name", "trials", "searcher", "seed", "seeds_per_trial", "objective", "metric"}
    | {"timesteps", "max_concurrent", "space"}
)


@dataclass(frozen=True)
class Parameter:
    """One searched config key and its distribution."""

    key: str
    """The config key path, `agent.<name>`."""
    kind: Kind
    values: tuple[Any, ...]
    """(low, high) for uniform, loguniform and int (both inclusive); the options for choice."""

    @property
    def name(self) -> str:
        return self.key.removeprefix("agent.")

    def encode(self, value: Any) -> Any:
        """A value as the searcher sees it: choices that are not scalars become JSON text."""
        plain = self.kind != "choice" or _scalar_options(self.values)
        return value if plain else json.dumps(value)

    def decode(self, value: Any) -> Any:
        if self.kind == "choice" and isinstance(value, str) and not _scalar_options(self.values):
            return json.loads(value)
        return value


@dataclass(frozen=True)
class SearchSpace:
    """A parsed, checked search space (see the module docstring)."""

    name: str
    path: str
    trials: int
    searcher: Literal["optuna", "random"]
    seed: int
    seeds_per_trial: int
    objective: Literal["mean", "min"]
    metric: str
    timesteps: int | None
    max_concurrent: int | None
    parameters: tuple[Parameter, ...]

    def as_dict(self) -> dict[str, Any]:
        """The space as recorded in the store (and hashed)."""
        return {
            "name": self.name,
            "trials": self.trials,
            "searcher": self.searcher,
            "seed": self.seed,
            "seeds_per_trial": self.seeds_per_trial,
            "objective": self.objective,
            "metric": self.metric,
            "timesteps": self.timesteps,
            "max_concurrent": self.max_concurrent,
            "space": {p.key: {p.kind: list(p.values)} for p in self.parameters},
        }

    @property
    def space_hash(self) -> str:
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def load_space(path: Path, settings: Settings, *, trials: int | None = None) -> SearchSpace:
    """Read and check a search space file against `settings` (see the module docstring).

    Raises:
        ConfigError: the file, a key or a value is not acceptable (naming which).
    """
    raw = read_yaml(path, what="search space")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r} (expected {sorted(TOP_KEYS)})")
    where = str(path)
    space = raw.get("space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: 'space' must map config keys to distributions")
    parameters = tuple(_parameter(where, key, spec) for key, spec in space.items())
    for parameter in parameters:
        for value in parameter.values:  # low and high, or every option
            settings_with(settings, {parameter.key: value}, source=f"{where}: space")
    searcher = raw.get("searcher", "optuna")
    objective = raw.get("objective", "mean")
    metric = raw.get("metric", "log_return")
    checks = [
        (searcher in ("optuna", "random"), "searcher", "optuna or random"),
        (objective in ("mean", "min"), "objective", "mean or min"),
        (metric in METRICS, "metric", " or ".join(METRICS)),
    ]
    for ok, key, allowed in checks:
        if not ok:
            raise ConfigError(f"{where}: {key} = {raw.get(key)!r}: expected {allowed}")
    return SearchSpace(
        name=str(raw.get("name") or path.stem),
        path=where,
        trials=trials if trials is not None else _count(where, raw, "trials", 16, 1, 100_000),
        searcher=searcher,
        seed=_count(where, raw, "seed", 0, 0, 2**31 - 1),
        seeds_per_trial=_count(where, raw, "seeds_per_trial", 1, 1, 100),
        objective=objective,
        metric=metric,
        timesteps=_optional(where, raw, "timesteps", 1, 1_000_000_000),
        max_concurrent=_optional(where, raw, "max_concurrent", 1, 4096),
        parameters=parameters,
    )


def settings_with(settings: Settings, values: Mapping[str, Any], *, source: str) -> Settings:
    """Return `settings` with config keys (`agent.x`) replaced, validated as the file would be.

    Raises:
        ConfigError: a value the configuration does not allow (naming `source` and the key).
    """
    data = settings.model_dump()
    for key, value in values.items():
        section, name = key.split(".", 1)
        data[section][name] = value
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source, model=Settings)) from e


def _parameter(where: str, key: Any, spec: Any) -> Parameter:
    if not isinstance(key, str) or not key.startswith("agent."):
        raise ConfigError(f"{where}: space key {key!r}: only agent.* keys can be searched")
    name = key.removeprefix("agent.")
    if name in FIXED_KEYS or "." in name:
        raise ConfigError(
            f"{where}: space key {key!r} cannot be searched: a study keeps "
            f"{', '.join(sorted(FIXED_KEYS))} fixed"
        )
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in KINDS:
        raise ConfigError(
            f"{where}: space.{key}: expected one of {{{', '.join(KINDS)}: ...}}, got {spec!r}"
        )
    kind, values = next(iter(spec.items()))
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{where}: space.{key}.{kind}: expected a non-empty list")
    if kind != "choice":
        if len(values) != 2 or not all(_number(v) for v in values) or values[0] >= values[1]:
            raise ConfigError(f"{where}: space.{key}.{kind}: expected [low, high] with low < high")
        if kind == "loguniform" and values[0] <= 0:
            raise ConfigError(f"{where}: space.{key}.loguniform: low must be > 0")
        if kind == "int" and not all(isinstance(v, int) for v in values):
            raise ConfigError(f"{where}: space.{key}.int: expected whole numbers")
    return Parameter(key, kind, tuple(values))


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _scalar_options(values: tuple[Any, ...]) -> bool:
    return all(_scalar(v) for v in values)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _count(where: str, raw: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ConfigError(f"{where}: {key} = {value!r}: expected a whole number {low}..{high}")
    return value


def _optional(where: str, raw: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    return None if raw.get(key) is None else _count(where, raw, key, low, low, high)
