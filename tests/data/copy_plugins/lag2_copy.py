"""COPY ATTACK: the shipped moving-average crossover delayed by two bar(s).

Its correlation with 'ma-crossover' at the same bar is below 1, but 'ma-crossover' 2 bar(s)
earlier is the same signal. Expected: refused by the originality check, which regresses on
every registered signal at lags 0-3, explained by 'ma-crossover'.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class LaterTrend(Strategy):
    name = "later-trend"
    version = "1.0.0"
    author = "Copycat"
    payout_address = "0x000000000000000000000000000000000000c0de"
    description = "Trend, confirmed."
    params: ClassVar[Mapping[str, Any]] = {"delay": 2}
    warmup_bars = 31

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"].astype("float64")
        copy = np.tanh(50.0 * (close.rolling(10).mean() / close.rolling(30).mean() - 1.0))
        return copy.shift(self.p["delay"])
