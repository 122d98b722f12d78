"""A third-party strategy, installed as a package and found through its entry point.

The close location value of a bar, ((close - low) - (high - close)) / (high - low), is +1 when
it closes at its high and -1 at its low: who won the bar, buyers or sellers. Its mean over the
last `window` bars is the signal. Causal: the rolling window ends at the current bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from agent.plugins import Strategy


class CloseLocation(Strategy):
    name = "close-location"
    version = "0.1.0"
    author = "An outside contributor"
    payout_address = "0x00000000000000000000000000000000000000aa"
    description = (
        "Mean close location value over the last `window` bars: +1 when every bar closed at its "
        "high, -1 at its low; a bar with no range counts 0."
    )
    params: ClassVar[Mapping[str, Any]] = {"window": 5}
    warmup_bars = 4  # window - 1: the mean needs `window` bars, the current one included

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        high = candles["high"].astype("float64")
        low = candles["low"].astype("float64")
        close = candles["close"].astype("float64")
        span = high - low
        location = ((close - low) - (high - close)) / span.where(span > 0.0)
        return location.fillna(0.0).rolling(self.p["window"]).mean().clip(-1.0, 1.0)
