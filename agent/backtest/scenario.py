"""Backtest scenarios: YAML files under backtests/ that say what to test, on what, at what cost.

A scenario names the data (the store, an in-memory synthetic market or a CSV file, and a
time range), the policy under test (a model or one strategy), the strategies that produce
signals, the baselines, the costs of the pool, the seed and, optionally, a walk-forward
schedule. Files are validated with pydantic: unknown keys and bad values are refused with
the key path. See docs/backtesting.md for every key; `agora backtest` with no file builds the
default scenario from the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.config import (
    MAX_TRAINING_SEED,
    RANGE_ERRORS,
    DexSettings,
    Location,
    Settings,
    SyntheticSettings,
    allowed_range,
    format_validation_error,
    read_yaml,
)
from agent.errors import ConfigError

BaselineName = Literal["buy-and-hold", "flat", "random"]
BASELINES: tuple[BaselineName, ...] = ("buy-and-hold", "flat", "random")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSpec(_Strict):
    """Where the candles come from and which bars are traded.

    `start`/`end` bound the traded bars (ISO 8601, inclusive). The whole history before `end`
    is loaded (features and signals are computed over it, as in training); `warmup_bars` is
    the earliest bar that may be traded.
    """

    source: Literal["store", "synthetic", "csv"] = "store"
    series: str | None = Field(
        None, description="store only: source:symbol:timeframe (default: the configured market)"
    )
    path: Path | None = Field(None, description="csv only: the file, relative to the scenario")
    symbol: str | None = None
    timeframe: str | None = None
    synthetic: dict[str, Any] = Field(
        default_factory=dict, description="synthetic only: overrides of market.synthetic"
    )
    start: str | None = None
    end: str | None = None
    warmup_bars: int | None = Field(None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _consistent(self) -> DataSpec:
        if self.source == "csv" and self.path is None:
            raise ValueError("data.path is required when data.source is csv")
        if self.source != "csv" and self.path is not None:
            raise ValueError("data.path applies only when data.source is csv")
        if self.series is not None and self.source != "store":
            raise ValueError("data.series applies only when data.source is store")
        if self.series is not None and len(self.series.split(":")) != 3:
            raise ValueError(f"data.series {self.series!r}: expected source:symbol:timeframe")
        if self.synthetic:
            try:
                SyntheticSettings.model_validate(self.synthetic)
            except ValidationError as e:
                first = e.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                allowed = allowed_range(SyntheticSettings, tuple(first["loc"]))
                bounds = f" (allowed: {allowed})" if first["type"] in RANGE_ERRORS else ""
                raise ValueError(f"data.synthetic.{where}: {first['msg']}{bounds}") from None
        return self


class MappingSpec(_Strict):
    """Signal -> target exposure of a strategy run alone (see engine.SignalMapping)."""

    kind: Literal["proportional", "threshold"] = "threshold"
    min_change: float = Field(0.2, ge=0.0, le=1.0)
    enter_above: float = Field(0.1, ge=-1.0, le=1.0)
    exit_below: float = Field(-0.1, ge=-1.0, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> MappingSpec:
        if self.exit_below > self.enter_above:
            raise ValueError("mapping.exit_below must not exceed mapping.enter_above")
        return self


class PolicySpec(_Strict):
    """The policy under test: a model (id or `live`) or one strategy; neither = compare only."""

    model: str | None = None
    strategy: str | None = None
    mapping: MappingSpec = MappingSpec()

    @model_validator(mode="after")
    def _one(self) -> PolicySpec:
        if self.model and self.strategy:
            raise ValueError("give policy.model or policy.strategy, not both")
        return self


class CostsSpec(_Strict):
    """Pool and costs; every key left out takes its value from the `dex` configuration."""

    liquidity_quote: float | None = Field(None, gt=0.0)
    fee_bps: int | None = Field(None, ge=0, le=1_000)
    gas_price_gwei: float | None = Field(None, ge=0.0)
    gas_per_swap: int | None = Field(None, ge=0)
    native_price_quote: float | None = Field(None, ge=0.0)
    min_trade_quote: float | None = Field(None, ge=0.0)

    def resolve(self, dex: DexSettings) -> dict[str, Any]:
        """Return the effective pool settings: these values over the configuration's."""
        base = dex.model_dump()
        return {k: (v if v is not None else base[k]) for k, v in self.model_dump().items()}


class RandomSpec(_Strict):
    """The seeded random baseline: a level drawn uniformly from `levels`, held `hold_bars` bars.

    The default is random timing: all in or all out, redrawn daily on hourly bars.
    """

    hold_bars: int = Field(24, ge=1, le=1_000_000)
    levels: tuple[float, ...] = (0.0, 1.0)

    @model_validator(mode="after")
    def _levels(self) -> RandomSpec:
        if not self.levels or not all(0.0 <= x <= 1.0 for x in self.levels):
            raise ValueError("random.levels must be non-empty values in [0, 1]")
        return self


class WalkForwardSpec(_Strict):
    """Train on `train_bars`, test on the next `test_bars`, roll forward by `test_bars`."""

    train_bars: int = Field(2_000, ge=100)
    test_bars: int = Field(500, ge=10)
    timesteps: int = Field(20_000, ge=64, le=100_000_000)
    algorithm: Literal["ppo", "a2c", "dqn", "sac"] = "ppo"


class ReportSpec(_Strict):
    """What the run writes: the results JSON and the HTML report, under `dir`."""

    html: bool = True
    json_: bool = Field(True, alias="json")
    dir: Path = Path("backtests/reports")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Scenario(_Strict):
    """One backtest, as written in backtests/<name>.yaml."""

    name: str = Field("backtest", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    data: DataSpec = DataSpec()
    policy: PolicySpec = PolicySpec()
    strategies: tuple[str, ...] | None = Field(
        None, description="strategies that produce signals (default: every usable one)"
    )
    strategy_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    compare_strategies: bool = True
    baselines: tuple[BaselineName, ...] = BASELINES
    random: RandomSpec = RandomSpec()
    costs: CostsSpec = CostsSpec()
    initial_value_quote: float = Field(10_000.0, gt=0.0)
    seed: int = Field(0, ge=0, le=MAX_TRAINING_SEED)
    days_per_year: float = Field(365.0, gt=0.0, le=366.0)
    execution: Literal["offchain", "onchain"] = "offchain"
    walkforward: WalkForwardSpec | None = None
    report: ReportSpec = ReportSpec()

    @model_validator(mode="after")
    def _coherent(self) -> Scenario:
        if self.walkforward is not None and self.policy.strategy:
            raise ValueError("walkforward trains a model: it cannot test policy.strategy")
        if self.walkforward is not None and self.policy.model:
            raise ValueError("walkforward trains its own models: leave policy.model out")
        if self.strategies is not None:
            unknown = set(self.strategy_params) - set(self.strategies)
            if unknown:
                raise ValueError(f"strategy_params for strategies not listed: {sorted(unknown)}")
            if self.policy.strategy and self.policy.strategy not in self.strategies:
                raise ValueError(f"policy.strategy {self.policy.strategy!r} is not in strategies")
        return self

    def as_data(self) -> dict[str, Any]:
        """Return the scenario as plain JSON-ready data (for run metadata)."""
        return self.model_dump(mode="json", by_alias=True)


def parse_scenario(
    raw: dict[str, Any],
    source: str = "scenario",
    base_dir: Path | None = None,
    *,
    origins: Mapping[Location, str] | None = None,
) -> Scenario:
    """Validate scenario data; relative paths (data.path) are resolved against `base_dir`.

    Args:
        raw: the scenario's data.
        source: where it comes from (the file), for messages.
        base_dir: the directory relative paths start from.
        origins: who set some of the values instead (a command-line option), by key path.

    Raises:
        ConfigError: naming the file, the key path, the value and what is allowed.
    """
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as e:
        message = format_validation_error(
            e, source, model=Scenario, origins=origins, docs="docs/backtesting.md"
        )
        raise ConfigError(message) from e
    path = scenario.data.path
    if base_dir is not None and path is not None and not path.is_absolute():
        data = scenario.data.model_copy(update={"path": base_dir / path})
        scenario = scenario.model_copy(update={"data": data})
    return scenario


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file; its name defaults to the file's stem.

    Raises:
        ConfigError: the file is missing, is not YAML, or does not validate.
    """
    path = Path(path)
    raw = read_yaml(path, what="scenario")
    raw.setdefault("name", path.stem)
    return parse_scenario(raw, str(path), path.resolve().parent)


def with_overrides(scenario: Scenario, **overrides: Any) -> Scenario:
    """Return the scenario with command-line overrides applied (None = keep the file's value).

    Keys: model, strategy (policy); start, end (data); seed; execution; initial_value_quote;
    and the cost keys of `CostsSpec`.
    """
    raw = scenario.as_data()
    given = {k: v for k, v in overrides.items() if v is not None}
    if "model" in given or "strategy" in given:
        raw["policy"] = {
            **raw["policy"],
            "model": given.pop("model", None),
            "strategy": given.pop("strategy", None),
        }
    for key in ("start", "end"):
        if key in given:
            raw["data"][key] = given.pop(key)
    for key in CostsSpec.model_fields:
        if key in given:
            raw["costs"][key] = given.pop(key)
    if "strategies" in given:
        raw["strategies"] = list(given.pop("strategies"))
    raw.update(given)
    origins = {
        location: option
        for key, (location, option) in OVERRIDE_OPTIONS.items()
        if overrides.get(key) is not None
    }
    return parse_scenario(raw, "command line", origins=origins)


OVERRIDE_OPTIONS: dict[str, tuple[Location, str]] = {
    "model": (("policy", "model"), "--model"),
    "strategy": (("policy", "strategy"), "--strategy"),
    "start": (("data", "start"), "--start"),
    "end": (("data", "end"), "--end"),
    "seed": (("seed",), "--seed"),
    "execution": (("execution",), "--onchain"),
    "fee_bps": (("costs", "fee_bps"), "--fee-bps"),
    "liquidity_quote": (("costs", "liquidity_quote"), "--liquidity"),
    "gas_price_gwei": (("costs", "gas_price_gwei"), "--gas-price"),
}
"""The `agora backtest` option behind each override of `with_overrides`, for messages."""


def default_scenario(settings: Settings) -> Scenario:
    """Return the scenario `agora backtest` runs without a file: the configured market."""
    return Scenario(name="default", description="the configured market, every strategy")
