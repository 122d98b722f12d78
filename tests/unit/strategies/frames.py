"""Candle frames for the hand-computed strategy tests: one bar an hour from the epoch."""

from __future__ import annotations

import numpy as np
import pandas as pd


def candles(
    closes: list[float], highs: list[float] | None = None, lows: list[float] | None = None
) -> pd.DataFrame:
    """Return candles with these closes (open = close; high/low = close unless given)."""
    close = np.asarray(closes, dtype="float64")
    return pd.DataFrame(
        {
            "open_time": np.arange(close.size, dtype="int64") * 3_600_000,
            "open": close,
            "high": close if highs is None else np.asarray(highs, dtype="float64"),
            "low": close if lows is None else np.asarray(lows, dtype="float64"),
            "close": close,
            "volume": np.ones(close.size),
        }
    )
