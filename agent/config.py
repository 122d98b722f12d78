"""Typed, frozen settings loaded from config.yaml, with `AGORA__section__key` overrides.

Unknown keys, wrong types and out-of-range values are refused with a message that names who
set the value (the file, or the `AGORA__…` variable), the key path, the value given and what is
allowed (`format_validation_error`, which command-line options use too). Secrets never live
in the file: it names the environment variables that hold them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agent.errors import ConfigError

ENV_PREFIX = "AGORA__"
DEFAULT_CONFIG_NAME = "config.yaml"
SECRET_WORDS = ("secret", "password", "private_key", "apikey", "api_key", "token")


class Section(BaseModel):
    """Base of every settings object: frozen, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(Section):
    dir: Path = Path("data")
    database: str = "agora.db"

    @property
    def database_path(self) -> Path:
        return self.dir / self.database


class PlantedSettings(Section):
    enabled: bool = True
    information_coefficient: float = Field(0.1, ge=0.0, le=0.9)
    half_life_bars: float = Field(24.0, gt=0.0, le=100_000.0)


class SyntheticSettings(Section):
    seed: int = Field(7, ge=0)
    bars: int = Field(5_000, ge=2, le=10_000_000)
    start: str = "2024-01-01T00:00:00Z"
    initial_price: float = Field(100.0, gt=0.0)
    annual_volatility: float = Field(0.6, gt=0.0, le=10.0)
    tail_dof: float = Field(4.0, gt=2.0, le=1_000.0)
    garch_alpha: float = Field(0.08, ge=0.0, lt=1.0)
    garch_beta: float = Field(0.90, ge=0.0, lt=1.0)
    regime_switch_prob: float = Field(0.002, ge=0.0, le=1.0)
    regime_drift_annual: float = Field(0.4, ge=0.0, le=10.0)
    base_volume: float = Field(1_000.0, gt=0.0)
    planted: PlantedSettings = PlantedSettings()

    @field_validator("garch_beta")
    @classmethod
    def _stationary(cls, beta: float, info: Any) -> float:
        alpha = info.data.get("garch_alpha", 0.0)
        if alpha + beta >= 1.0:
            raise ValueError(f"garch_alpha + garch_beta must be < 1 (got {alpha} + {beta})")
        return beta


class ExchangeSettings(Section):
    id: str = "binance"
    sandbox: bool = False
    urls: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    api_key_env: str | None = None
    secret_env: str | None = None
    rate_limit: bool = True
    timeout_ms: int = Field(10_000, ge=100, le=600_000)
    page_limit: int = Field(1_000, ge=1, le=10_000)
    max_tries: int = Field(5, ge=1, le=50)
    backoff_s: float = Field(1.0, ge=0.0, le=600.0)


class MarketSettings(Section):
    source: Literal["synthetic", "csv", "exchange"] = "synthetic"
    symbol: str = "SYN/USD"
    timeframe: str = "1h"
    synthetic: SyntheticSettings = SyntheticSettings()
    exchange: ExchangeSettings = ExchangeSettings()

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        from agent.market.schema import timeframe_ms

        try:
            timeframe_ms(value)
        except ConfigError as e:
            raise ValueError(str(e).removeprefix(f"timeframe {value!r} is ")) from e
        return value


class ChainSettings(Section):
    backend: Literal["embedded", "anvil", "rpc"] = "embedded"
    rpc_url: str | None = None
    private_key_env: str = "AGORA_PRIVATE_KEY"
    anvil_path: Path | None = None
    anvil_persist: bool = True
    deadline_s: int = Field(300, ge=1, le=86_400)
    """Seconds a swap stays valid after the latest of its decision's time, the wall clock and
    the chain's latest block (the pool refuses it after that: `Pool: EXPIRED`)."""
    anvil_state_interval_s: int = Field(2, ge=1, le=3_600)
    rpc_timeout_s: float = Field(10.0, gt=0.0, le=600.0)


class DexSettings(Section):
    liquidity_quote: float = Field(10_000_000.0, gt=0.0)
    fee_bps: int = Field(30, ge=0, le=1_000)
    gas_price_gwei: float = Field(20.0, ge=0.0)
    gas_per_swap: int = Field(110_000, ge=0)
    native_price_quote: float = Field(3_000.0, gt=0.0)
    min_trade_quote: float = Field(5.0, ge=0.0)


class SplitSettings(Section):
    """Chronological fractions of the bars: train, then validation, then test."""

    train: float = Field(0.6, gt=0.0, lt=1.0)
    validation: float = Field(0.2, gt=0.0, lt=1.0)
    test: float = Field(0.2, gt=0.0, lt=1.0)

    @field_validator("test")
    @classmethod
    def _sums_to_one(cls, test: float, info: Any) -> float:
        total = info.data.get("train", 0.0) + info.data.get("validation", 0.0) + test
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"train + validation + test must be 1 (got {total:g})")
        return test


DEFAULT_AGENT_STRATEGIES: tuple[str, ...] = (
    "ma-crossover",
    "rsi-reversion",
    "bollinger-reversion",
    "macd",
    "donchian-breakout",
    "ts-momentum",
)


MAX_TRAINING_SEED = 2**32 - 1
"""The largest seed numpy, torch and stable-baselines3 all accept."""


class AgentSettings(Section):
    algorithm: Literal["ppo", "a2c", "dqn", "sac"] = "ppo"
    seed: int = Field(0, ge=0, le=MAX_TRAINING_SEED)
    seeds: int = Field(1, ge=1, le=100)
    timesteps: int = Field(100_000, ge=1, le=1_000_000_000)
    eval_every_steps: int = Field(10_000, ge=1)
    selection_margin: float = Field(1.0, ge=0.0, le=10.0)
    strategies: list[str] = Field(default_factory=lambda: list(DEFAULT_AGENT_STRATEGIES))
    split: SplitSettings = SplitSettings()
    lookback_bars: int = Field(4, ge=1, le=1_000)
    action: Literal["discrete", "continuous"] = "discrete"
    exposure_levels: list[float] = Field(default_factory=lambda: [0.0, 1.0])
    episode_bars: int = Field(720, ge=2)
    strategy_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    turnover_penalty: float = Field(0.003741984622246116, ge=0.0)
    reward_scale: float = Field(100.0, gt=0.0)
    initial_value_quote: float = Field(10_000.0, gt=0.0)
    net_arch: list[int] = Field(default_factory=lambda: [64, 64])
    learning_rate: float = Field(0.0006681680108363694, gt=0.0, le=1.0)
    n_steps: int = Field(2_048, ge=2)
    batch_size: int = Field(256, ge=2)
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    ent_coef: float = Field(0.0, ge=0.0)
    buffer_size: int = Field(100_000, ge=1)
    learning_starts: int = Field(1_000, ge=0)

    @field_validator("seeds")
    @classmethod
    def _seeds_in_range(cls, seeds: int, info: Any) -> int:
        last = info.data.get("seed", 0) + seeds - 1
        if last > MAX_TRAINING_SEED:
            raise ValueError(f"the last seed, seed + seeds - 1 = {last}, exceeds 2**32 - 1")
        return seeds

    @field_validator("exposure_levels")
    @classmethod
    def _levels_in_range(cls, levels: list[float]) -> list[float]:
        if not levels or not all(0.0 <= x <= 1.0 for x in levels):
            raise ValueError("expected a non-empty list of exposures in [0, 1]")
        return levels

    @field_validator("net_arch")
    @classmethod
    def _positive_layers(cls, layers: list[int]) -> list[int]:
        if not layers or not all(x >= 1 for x in layers):
            raise ValueError("expected a non-empty list of layer widths >= 1")
        return layers

    @field_validator("strategies")
    @classmethod
    def _unique_strategies(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError("the same strategy is listed twice")
        for spec in names:
            try:
                parse_strategy_spec(spec)
            except ConfigError as e:
                raise ValueError(str(e).removeprefix("agent.strategies ")) from e
        return names


def parse_strategy_spec(
    spec: str, *, where: str = "agent.strategies"
) -> tuple[str, dict[str, Any]]:
    """Split `name:param=value,...` into the name and its parameter overrides.

    Args:
        spec: the strategy spec.
        where: the setting the spec comes from, for messages.

    Raises:
        ConfigError: the spec is malformed.
    """
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} entry {spec!r}: expected name:param=value[,param=value]")
        try:
            params[key.strip()] = yaml.safe_load(value.strip())
        except yaml.YAMLError as e:
            raise ConfigError(
                f"{where} entry {spec!r}: {key.strip()}={value.strip()} is not a value "
                "(numbers, true/false or text)"
            ) from e
    if not name.strip():
        raise ConfigError(f"{where} entry {spec!r} has no strategy name")
    return name.strip(), params


class StrategiesSettings(Section):
    plugin_dir: Path = Path("plugins")
    sandbox: Literal["bubblewrap", "none"] = "bubblewrap"
    cpu_seconds: float = Field(30.0, gt=0.0, le=3_600.0)
    memory_mb: int = Field(1_024, ge=256, le=1_048_576)
    wall_seconds: float = Field(60.0, gt=0.0, le=3_600.0)
    file_size_mb: int = Field(16, ge=1, le=1_048_576)
    speed_budget_s_per_10k_bars: float = Field(2.0, gt=0.0, le=3_600.0)
    originality_max_r2: float = Field(0.8, gt=0.0, le=1.0)
    originality_lags: int = Field(3, ge=0, le=24)
    causality_cut_points: int = Field(20, ge=1, le=1_000)
    reference_bars: int = Field(3_000, ge=200, le=1_000_000)
    reference_seed: int = Field(20_240_101, ge=0)
    lookahead_samples: int = Field(460, ge=1, le=1_000_000)
    fixtures: list[str] = Field(default_factory=list)


class RewardsSettings(Section):
    epoch_bars: int = Field(500, ge=1)
    emission_per_epoch: int = Field(1_000 * 10**18, ge=0)
    profit_share_bps: int = Field(0, ge=0, le=10_000)
    remainder_policy: Literal["carry", "treasury"] = "carry"
    treasury_address: str | None = None
    shapley_exact_max_players: int = Field(10, ge=0, le=20)
    shapley_samples: int = Field(200, ge=2, le=1_000_000)
    shapley_seed: int = Field(0, ge=0)
    auto_claim: bool = False
    workers: int = Field(2, ge=1, le=256)
    significance: float = Field(2.0, ge=0.0, le=100.0)
    decay_half_life_epochs: float = Field(8.0, gt=0.0, le=10_000.0)
    carry_release: float = Field(0.1, gt=0.0, le=1.0)
    bootstrap_samples: int = Field(1000, ge=2, le=1_000_000)
    bootstrap_block_bars: int = Field(24, ge=1, le=100_000)
    group_r2: float = Field(0.5, gt=0.0, le=1.0)
    neutralise_lags: int = Field(3, ge=0, le=24)

    @field_validator("treasury_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from eth_utils import is_address, to_checksum_address

        if not is_address(value):
            raise ValueError("expected a 0x-prefixed 20-byte address (or null for the operator)")
        return str(to_checksum_address(value))


class ServiceSettings(Section):
    """`agora run`: the scheduled service (see docs/service.md)."""

    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65_535)
    dashboard: bool = True
    """Serve the dashboard (agent.dashboard) beside /health and /metrics on host:port."""
    mode: Literal["paper"] = "paper"
    feed: Literal["replay", "exchange"] = "replay"
    chain: Literal["embedded", "anvil", "rpc"] = "embedded"
    start_bar: int = Field(3_000, ge=1, le=10_000_000)
    replay_speed: float = Field(1.0, ge=0.0, le=1_000_000.0)
    poll_s: float | None = Field(None, gt=0.0, le=3_600.0)
    misfire_grace_s: float | None = Field(None, gt=0.0, le=86_400.0)
    heartbeat_s: float = Field(10.0, gt=0.0, le=3_600.0)
    decision_batch_size: int = Field(1, ge=1, le=500)
    retrain_every_bars: int = Field(0, ge=0)
    bootstrap_model: bool = True
    bootstrap_timesteps: int = Field(20_000, ge=1, le=1_000_000_000)
    pay_rewards: bool = True
    log_file: Path | None = None


class ComputeSettings(Section):
    """Where fanned-out work runs (agent.compute, docs/scale-out.md)."""

    backend: Literal["local", "ray"] = "local"
    address: str | None = None
    """Ray only: null starts Ray on this machine; `auto`, `host:port` or `ray://host:port`
    joins a running cluster."""
    num_cpus: int | None = Field(None, ge=1, le=4096)
    """A Ray started on this machine may use this many CPUs (null: all of them)."""
    cpus_per_task: float = Field(1.0, gt=0.0, le=1024.0)
    memory_mb_per_task: int | None = Field(None, ge=1, le=16_777_216)
    max_retries: int = Field(3, ge=0, le=100)
    """Times Ray reruns a task whose worker died (tasks are pure: same result)."""

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None or value == "auto":
            return value
        target = value.removeprefix("ray://")
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65_536:
            raise ValueError("expected null, auto, host:port or ray://host:port")
        return value


class Settings(Section):
    """The whole configuration: one attribute per section of config.yaml."""

    data: DataSettings = DataSettings()
    market: MarketSettings = MarketSettings()
    chain: ChainSettings = ChainSettings()
    dex: DexSettings = DexSettings()
    agent: AgentSettings = AgentSettings()
    strategies: StrategiesSettings = StrategiesSettings()
    rewards: RewardsSettings = RewardsSettings()
    service: ServiceSettings = ServiceSettings()
    compute: ComputeSettings = ComputeSettings()

    def config_hash(self) -> str:
        """Return a stable hash of the effective configuration (for run metadata): the first
        16 hex digits of `config_sha256`."""
        return self.config_sha256()[:16]

    def config_sha256(self) -> str:
        """Return the sha256 (hex) of the sorted-key JSON dump of the effective configuration.

        Where the work runs (`compute`) is left out: it does not change any result.
        """
        blob = json.dumps(self.model_dump(mode="json", exclude={"compute"}), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()


REPLACED_KEYS = {
    "strategies.originality_max_correlation": (
        "it was replaced by strategies.originality_max_r2, the share of a new signal's variance "
        "the registered signals and their lags may explain (default 0.8)"
    ),
}
"""Keys that no longer exist, with what replaced them (named in the unknown-key error)."""


RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})
Location = tuple[str | int, ...]
_SIGNS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _field_at(model: type[BaseModel], loc: Location) -> Any:
    """Return the pydantic field that `loc` (an error's location) points at, if any."""
    field = None
    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if not isinstance(part, str) or not fields or part not in fields:
            return None
        field = fields[part]
        current = field.annotation
    return field


def allowed_range(model: type[BaseModel], loc: Location) -> str | None:
    """Describe the numeric range a field allows (`2 to 10000000`, `> 0 and <= 10`)."""
    field = _field_at(model, loc)
    if field is None:
        return None
    bounds = {
        name: getattr(item, name)
        for item in field.metadata
        for name in ("ge", "gt", "le", "lt")
        if getattr(item, name, None) is not None
    }
    if "ge" in bounds and "le" in bounds:
        return f"{bounds['ge']} to {bounds['le']}"
    parts = [f"{sign} {bounds[name]}" for name, sign in _SIGNS if name in bounds]
    return " and ".join(parts) or None


def _culprit(loc: Location, origins: Mapping[Location, str], default: str) -> str:
    """Return who set the value at `loc`: the origin of its longest prefix, else `default`."""
    for size in range(len(loc), 0, -1):
        if loc[:size] in origins:
            return origins[loc[:size]]
    return default


def format_validation_error(
    error: ValidationError,
    source: str,
    *,
    model: type[BaseModel] | None = None,
    origins: Mapping[Location, str] | None = None,
    prefix: str = "",
    docs: str = "docs/config.md",
) -> str:
    """Render a pydantic error as one line per bad value, naming who set it and what is allowed.

    Args:
        error: the validation error.
        source: who gave the values (a file name, "defaults").
        model: the model validated, to name the allowed range of a number out of range.
        origins: who set the values under some locations instead (an environment variable,
            a command-line option), by location.
        prefix: key path of the validated model inside the settings (`market.synthetic`).
        docs: the page that lists the keys, named when a key is unknown.
    """
    lines = []
    for item in error.errors():
        loc: Location = tuple(item["loc"])
        path = ".".join(str(part) for part in (prefix.split(".") if prefix else []) + list(loc))
        path = path or "(top level)"
        culprit = _culprit(loc, origins or {}, source)
        if item["type"] == "extra_forbidden":
            hint = REPLACED_KEYS.get(path, "check the spelling")
            lines.append(f"{culprit}: unknown key '{path}' ({hint}; see {docs})")
            continue
        message = " ".join(item["msg"].removeprefix("Value error, ").split())
        allowed = allowed_range(model, loc) if model and item["type"] in RANGE_ERRORS else None
        if allowed:
            message += f" (allowed: {allowed})"
        given = item.get("input")
        shown = "" if isinstance(given, dict) else f" = {given!r}"
        lines.append(f"{culprit}: {path}{shown}: {message}")
    return "\n".join(lines)


def _parse_scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _override_path(name: str) -> list[str]:
    parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"environment override {name}: expected AGORA__section__key")
    return parts


def env_override_origins(environ: Mapping[str, str]) -> dict[Location, str]:
    """Return the key path each `AGORA__…` variable sets, mapped to the variable's name."""
    return {
        tuple(_override_path(name)): f"environment variable {name}"
        for name in sorted(environ)
        if name.startswith(ENV_PREFIX)
    }


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Return `raw` with every `AGORA__section__key[__subkey]=value` applied."""
    merged = json.loads(json.dumps(raw))
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = _override_path(name)
        node = merged
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment override {name}: '{part}' is not a section")
            node = child
        node[parts[-1]] = _parse_scalar(value)
    return merged


def read_yaml(path: Path, *, what: str = "config") -> dict[str, Any]:
    """Read a YAML mapping, raising ConfigError with the file and line on bad syntax.

    Args:
        path: the file.
        what: what the file is, for messages ("config", "scenario").
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise ConfigError(f"{what} file not found: {path}") from e
    except OSError as e:
        raise ConfigError(f"cannot read {what} file {path}: {e.strerror}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}: {getattr(e, 'problem', e)}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of {what} keys, got {type(data).__name__}")
    return data


def load_settings(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load settings from `path` (default ./config.yaml if present) plus env overrides.

    Relative paths in the file (data.dir, strategies.plugin_dir) are resolved against the
    directory that holds the file, so a config works from any working directory.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        path = candidate if candidate.exists() else None
    raw: dict[str, Any] = read_yaml(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    raw = apply_env_overrides(raw, environ)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as e:
        origins = env_override_origins(environ)
        message = format_validation_error(e, source, model=Settings, origins=origins)
        raise ConfigError(message) from e
    if path is not None:
        settings = _resolve_paths(settings, Path(path).resolve().parent)
    return settings


def _resolve_paths(settings: Settings, base: Path) -> Settings:
    data_dir = settings.data.dir if settings.data.dir.is_absolute() else base / settings.data.dir
    plugin_dir = settings.strategies.plugin_dir
    if not plugin_dir.is_absolute():
        plugin_dir = base / plugin_dir
    return settings.model_copy(
        update={
            "data": settings.data.model_copy(update={"dir": data_dir}),
            "strategies": settings.strategies.model_copy(update={"plugin_dir": plugin_dir}),
        }
    )


def _is_secret(key: str) -> bool:
    lowered = key.lower()
    if lowered.endswith("_env"):
        return False  # the *name* of an environment variable is not a secret
    return any(word in lowered for word in SECRET_WORDS)


def masked(value: Any, key: str = "") -> Any:
    """Return a JSON-ready copy of a settings dump with secret-looking values masked."""
    if isinstance(value, dict):
        return {k: masked(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, key) for v in value]
    if key and _is_secret(key) and value not in (None, ""):
        return "***"
    return value


def effective_config(settings: Settings) -> dict[str, Any]:
    """Return the effective configuration as plain data, secrets masked."""
    result: dict[str, Any] = masked(settings.model_dump(mode="json"))
    return result


def iter_key_paths(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """List every configuration key path (`market.synthetic.seed`), for docs and tests."""
    paths: list[str] = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            paths.extend(iter_key_paths(annotation, path + "."))
    return paths
