"""What the agent learns from: market features and strategy signals, split in time order.

A `Dataset` is one market's precomputed `MarketData` plus three chronological windows (train,
validation, test: oldest to newest, never shuffled) and a hash of exactly what the
environment will see. Signals come from `agent.plugins.signals.compute_signals`, so shipped
strategies run in-process, third-party ones in the sandbox, and failures are masked.

Strategy specs. `agent.strategies` lists `name` or `name:param=value,param=value` (values read
as YAML, e.g. `noise:seed=3`); the spec is the signal's column name, so one strategy can appear
with several parameter sets. Names resolve among the shipped strategies, the test fixtures
(`planted-oracle`, `noise`: for tests and demos only, never listed to users) and then the
discovered plugins.

Split boundaries. With `n` bars and cut points `a = round(n * train)` and
`b = round(n * (train + validation))`, training sees bars [0, a), validation decides on bars
[a, b - 1) and is measured up to the close of b - 1, and the test decides on [b, n - 1). An
environment for a split is given only the bars up to the end of that split, so nothing past it
can leak in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from agent.config import AgentSettings, Settings, SplitSettings
from agent.dex.pool import PoolConfig
from agent.env.features import FEATURE_NAMES, FeatureParams, market_features
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ConfigError, DataError, PluginError
from agent.market.schema import SeriesKey
from agent.store import Store

SplitName = Literal["train", "validation", "test"]
SPLITS: tuple[SplitName, ...] = ("train", "validation", "test")
MIN_SPLIT_BARS = 8
"""Fewest bars a validation or test window may have (anything less measures nothing)."""


@dataclass(frozen=True)
class Window:
    """Bars [start, end) of a split; decisions run from `start` to `end - 2`.

    Attributes:
        name: train, validation or test.
        start: first bar of the split.
        end: one past its last bar.
        start_ms: open time of the first bar.
        end_ms: open time of the last bar.
    """

    name: SplitName
    start: int
    end: int
    start_ms: int
    end_ms: int

    @property
    def bars(self) -> int:
        return self.end - self.start

    def as_dict(self) -> dict[str, int | str]:
        return {
            "name": self.name,
            "start": self.start,
            "end": self.end,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }


@dataclass(frozen=True)
class Dataset:
    """One market ready for training and evaluation.

    Attributes:
        data: features, signals and masks of every bar.
        windows: the train, validation and test windows, by name.
        data_hash: sha256 of everything the environment reads (see `data_hash`).
        key: the stored series it came from, if any.
        reasons: why a strategy has no signal at all, by column name.
    """

    data: MarketData
    windows: Mapping[SplitName, Window]
    data_hash: str
    key: SeriesKey | None = None
    reasons: Mapping[str, str] | None = None

    @property
    def strategy_names(self) -> tuple[str, ...]:
        return self.data.strategy_names

    def env_data(self, split: SplitName) -> tuple[MarketData, int, int]:
        """Return (data, start, end) for an environment on `split`.

        `data` stops at the split's last bar, so the environment cannot read anything later;
        `reset(options={"start": start, "end": end})` runs the whole split (for train: the
        data alone, episodes are random windows of it).
        """
        window = self.windows[split]
        return self.data.window(0, window.end), window.start, window.end - 1


def parse_strategy_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split `name:param=value,...` into the name and its parameter overrides."""
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"agent.strategies entry {spec!r}: expected name:param=value[,param=value]"
            )
        params[key.strip()] = yaml.safe_load(value.strip())
    if not name.strip():
        raise ConfigError(f"agent.strategies entry {spec!r} has no strategy name")
    return name.strip(), params


def resolve_strategies(specs: Sequence[str], settings: Settings | None = None) -> list[Any]:
    """Turn strategy specs into runnable strategies for `compute_signals`, named by spec.

    Shipped strategies and test fixtures resolve without starting anything; other names are
    looked up among the discovered plugins (which loads them in the sandbox).

    Raises:
        ConfigError: a spec is malformed or names no usable strategy.
    """
    from agent.plugins.discovery import DiscoveredStrategy, discover, discover_shipped, find
    from strategies.testing import NoiseStrategy, PlantedOracle

    known = {item.name: item for item in discover_shipped()}
    for fixture in (PlantedOracle, NoiseStrategy):
        known.setdefault(fixture.name, DiscoveredStrategy.from_class(fixture, origin="fixture"))
    parsed = [parse_strategy_spec(spec) for spec in specs]
    missing = [name for name, _ in parsed if name not in known]
    if missing:
        found = discover(settings or Settings(), shipped=False)
        for name in missing:
            try:
                known[name] = find(found, name)
            except PluginError as e:
                raise ConfigError(f"agent.strategies: {e}") from e
    return [
        replace(known[name].with_params(**params), name=spec)
        for spec, (name, params) in zip(specs, parsed, strict=True)
    ]


def build_market_data(
    candles: pd.DataFrame,
    strategies: Sequence[Any],
    *,
    key: SeriesKey | None = None,
    store: Store | None = None,
    hidden: Mapping[str, Any] | None = None,
    feature_params: FeatureParams | None = None,
) -> tuple[MarketData, dict[str, str]]:
    """Precompute features and every strategy's signal for `candles`.

    Args:
        candles: the candle frame, oldest first.
        strategies: from `resolve_strategies` (or strategy classes).
        key: the series the candles come from (caches signals in `store`).
        store: where hidden series and cached signals are read from.
        hidden: hidden series aligned with the candles (the synthetic market's `planted`).
        feature_params: estimator look-backs of the market features.

    Returns:
        The market data and the reasons of strategies that produced no signal.
    """
    from agent.plugins.signals import compute_signals

    if len(candles) < 2:
        raise DataError(f"{len(candles)} candles are too few to learn from")
    candles = candles.reset_index(drop=True)
    signals = compute_signals(strategies, candles, key=key, store=store, hidden=hidden)
    data = MarketData(
        open_time=candles["open_time"].to_numpy(dtype="int64"),
        close=candles["close"].to_numpy(dtype="float64"),
        features=market_features(candles, feature_params),
        signals=signals.values.astype("float32"),
        mask=signals.mask.astype(bool),
        strategy_names=tuple(signals.names),
    )
    return data, dict(signals.reasons)


def data_hash(data: MarketData) -> str:
    """Return the sha256 of everything the environment reads, in a fixed byte layout.

    Covers open times, closes, features, signals, masks and strategy names, so two data sets
    with the same hash give any policy the same observations and rewards.
    """
    digest = hashlib.sha256()
    digest.update(f"features={','.join(FEATURE_NAMES)};bars={data.bars};".encode())
    digest.update(("strategies=" + "\0".join(data.strategy_names) + ";").encode())
    for array, dtype in (
        (data.open_time, "<i8"),
        (data.close, "<f8"),
        (data.features, "<f4"),
        (data.signals, "<f4"),
        (data.mask, "|b1"),
    ):
        digest.update(np.ascontiguousarray(array, dtype=dtype).tobytes())
    return digest.hexdigest()


def split_windows(
    open_time: np.ndarray, split: SplitSettings, *, first_bar: int = 0
) -> dict[SplitName, Window]:
    """Cut the bars into train, validation and test windows, in time order.

    Raises:
        DataError: a window would be too short to train on or to measure.
    """
    bars = len(open_time)
    cut_a = round(bars * split.train)
    cut_b = round(bars * (split.train + split.validation))
    bounds: dict[SplitName, tuple[int, int]] = {
        "train": (0, cut_a),
        "validation": (cut_a, cut_b),
        "test": (cut_b, bars),
    }
    need = {"train": first_bar + 2, "validation": MIN_SPLIT_BARS, "test": MIN_SPLIT_BARS}
    for name, (start, end) in bounds.items():
        if end - start < need[name]:
            raise DataError(
                f"the {name} split has {end - start} of {bars} bars; it needs at least "
                f"{need[name]}: use more bars (agora data synth --bars) or change agent.split"
            )
    return {
        name: Window(name, start, end, int(open_time[start]), int(open_time[end - 1]))
        for name, (start, end) in bounds.items()
    }


def env_config(
    settings: Settings, action: Literal["discrete", "continuous"] | None = None
) -> EnvConfig:
    """Return the environment the configuration describes (agent section plus the dex pool)."""
    agent: AgentSettings = settings.agent
    dex = settings.dex
    pool = PoolConfig(
        liquidity_quote=dex.liquidity_quote,
        fee_bps=dex.fee_bps,
        gas_price_gwei=dex.gas_price_gwei,
        gas_per_swap=dex.gas_per_swap,
        native_price_quote=dex.native_price_quote,
        min_trade_quote=dex.min_trade_quote,
    )
    return EnvConfig(
        lookback_bars=agent.lookback_bars,
        action=action or agent.action,
        exposure_levels=tuple(agent.exposure_levels),
        episode_bars=agent.episode_bars,
        first_bar=max(FeatureParams().warmup_bars, agent.lookback_bars - 1),
        strategy_dropout=agent.strategy_dropout,
        turnover_penalty=agent.turnover_penalty,
        initial_value_quote=agent.initial_value_quote,
        pool=pool,
    )


def dataset_from_candles(
    candles: pd.DataFrame,
    settings: Settings,
    *,
    strategies: Sequence[str] | None = None,
    key: SeriesKey | None = None,
    store: Store | None = None,
    hidden: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build the data set of `candles` with the configured strategies and split.

    Args:
        candles: the candle frame, oldest first.
        settings: the configuration (agent.strategies, agent.split, agent.lookback_bars).
        strategies: strategy specs to use instead of `agent.strategies`.
        key: the series the candles come from.
        store: for hidden series and the signal cache.
        hidden: hidden series aligned with the candles.
    """
    specs = list(settings.agent.strategies if strategies is None else strategies)
    resolved = resolve_strategies(specs, settings)
    data, reasons = build_market_data(candles, resolved, key=key, store=store, hidden=hidden)
    windows = split_windows(
        data.open_time, settings.agent.split, first_bar=env_config(settings).first_bar
    )
    return Dataset(data, windows, data_hash(data), key, reasons)


def load_dataset(
    store: Store,
    settings: Settings,
    key: SeriesKey | None = None,
    *,
    strategies: Sequence[str] | None = None,
) -> Dataset:
    """Build the data set of a stored series (default: the configured market).

    Raises:
        DataError: the series has no candles or too few for the split.
    """
    from agent.market.data import default_key

    key = key or default_key(settings)
    candles = store.read_candles(key)
    if candles.empty:
        raise DataError(
            f"no candles stored for {key}: generate or fetch some first "
            "(agora data synth, agora data download)"
        )
    return dataset_from_candles(candles, settings, strategies=strategies, key=key, store=store)
