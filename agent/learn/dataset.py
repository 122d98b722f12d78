"""What the agent learns from: market features and strategy signals, split in time order.

A `Dataset` is one market's precomputed `MarketData` plus three chronological windows (train,
validation, test: oldest to newest, never shuffled) and a hash of exactly what the
environment will see. Signals come from `agent.plugins.signals.compute_signals`, so shipped
strategies run in-process, third-party ones in the sandbox, and failures are masked.

Strategy specs (`name` or `name:param=value,...`) resolve through the one resolver,
`agent.plugins.resolve`; the arrays are built by the one builder, `agent.plugins.market_data`;
the data hash is `MarketData.digest()`.

Split boundaries. With `n` bars and cut points `a = round(n * train)` and
`b = round(n * (train + validation))`, training sees bars [0, a), validation decides on bars
[a, b - 1) and is measured up to the close of b - 1, and the test decides on [b, n - 1). An
environment for a split is given only the bars up to the end of that split, so nothing past it
can leak in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from agent.config import Settings, SplitSettings
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import DataError
from agent.market.schema import SeriesKey
from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies
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
        data_hash: `MarketData.digest()`: sha256 of everything the environment reads.
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


def dataset_from_candles(
    candles: pd.DataFrame,
    settings: Settings,
    *,
    strategies: Sequence[str | DiscoveredStrategy] | None = None,
    key: SeriesKey | None = None,
    store: Store | None = None,
    hidden: Mapping[str, Any] | None = None,
) -> Dataset:
    """Build the data set of `candles` with the configured strategies and split.

    Args:
        candles: the candle frame, oldest first.
        settings: the configuration (agent.strategies, agent.split, agent.lookback_bars).
        strategies: strategy specs to use instead of `agent.strategies`, or strategies already
            loaded (a plugin file `agora strategies evaluate` adds to a model's list).
        key: the series the candles come from.
        store: for hidden series and the signal cache.
        hidden: hidden series aligned with the candles.
    """
    specs = list(settings.agent.strategies if strategies is None else strategies)
    named = iter(resolve_strategies([s for s in specs if isinstance(s, str)], settings))
    resolved = [next(named) if isinstance(s, str) else s for s in specs]
    data, reasons = build_market_data(
        candles,
        resolved,
        key=key,
        store=store,
        hidden=hidden,
        settings=settings.strategies,
        source="training",
    )
    windows = split_windows(
        data.open_time, settings.agent.split, first_bar=EnvConfig.from_settings(settings).first_bar
    )
    return Dataset(data, windows, data.digest(), key, reasons)


def load_dataset(
    store: Store,
    settings: Settings,
    key: SeriesKey | None = None,
    *,
    strategies: Sequence[str | DiscoveredStrategy] | None = None,
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
