"""The one market-data builder: candles to the arrays every policy run reads.

`build_market_data` computes the causal market features and every strategy's signal (through
`compute_signals`: shipped strategies in-process, third-party ones isolated, failures masked)
over a candle frame, oldest first. Training, backtests, reward epochs and the service all build
their `MarketData` here, over the whole stored history up to the bar they need, so a signal at
bar t is the same number wherever it is computed. `MarketData.digest()` is its one data hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from agent.config import StrategiesSettings
from agent.env.features import FeatureParams, market_features
from agent.env.trading_env import MarketData
from agent.errors import DataError
from agent.market.schema import SeriesKey
from agent.store import Store


def build_market_data(
    candles: pd.DataFrame,
    strategies: Sequence[Any],
    *,
    key: SeriesKey | None = None,
    store: Store | None = None,
    hidden: Mapping[str, Any] | None = None,
    feature_params: FeatureParams | None = None,
    settings: StrategiesSettings | None = None,
    source: str = "signals",
    lookahead: bool = True,
) -> tuple[MarketData, dict[str, str]]:
    """Precompute features and every strategy's signal for `candles`.

    Args:
        candles: the candle frame, oldest first.
        strategies: from `agent.plugins.resolve.resolve_strategies` (or strategy classes).
        key: the series the candles come from (caches signals in `store`).
        store: where hidden series and cached signals are read from.
        hidden: hidden series aligned with the candles (the synthetic market's `planted`).
        feature_params: estimator look-backs of the market features.
        settings: the `strategies` section (look-ahead samples, fixtures, sandbox limits).
        source: what the data is for (training, backtest, rewards, service), recorded when a
            strategy is caught looking ahead.
        lookahead: check third-party signals for look-ahead (see `compute_signals`).

    Returns:
        The market data and the reasons of strategies that produced no signal.
    """
    from agent.plugins.signals import compute_signals

    if len(candles) < 2:
        raise DataError(f"{len(candles)} candles are too few to build market data from")
    candles = candles.reset_index(drop=True)
    signals = compute_signals(
        strategies,
        candles,
        key=key,
        store=store,
        hidden=hidden,
        settings=settings,
        source=source,
        lookahead=lookahead,
    )
    data = MarketData(
        open_time=candles["open_time"].to_numpy(dtype="int64"),
        close=candles["close"].to_numpy(dtype="float64"),
        features=market_features(candles, feature_params),
        signals=signals.values.astype("float32"),
        mask=signals.mask.astype(bool),
        strategy_names=tuple(signals.names),
    )
    return data, dict(signals.reasons)
