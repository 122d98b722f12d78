"""COPY ATTACK: the shipped moving-average crossover, byte for byte its formula, under a new name.

Expected: refused by the originality check (R² 1.000, explained by 'ma-crossover').
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class FreshTrend(Strategy):
    name = "fresh-trend"
    version = "1.0.0"
    author = "Copycat"
    payout_address = "0x000000000000000000000000000000000000c0de"
    description = "A fresh take on trends."
    params: ClassVar[Mapping[str, Any]] = {"fast": 10, "slow": 30, "scale": 50.0}
    warmup_bars = 29

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"].astype("float64")
        fast = close.rolling(self.p["fast"]).mean()
        slow = close.rolling(self.p["slow"]).mean()
        return np.tanh(self.p["scale"] * (fast / slow - 1.0))
