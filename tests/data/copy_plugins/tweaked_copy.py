"""COPY ATTACK: the shipped moving-average crossover with other windows (fast 14, slow 40).

Its correlation with 'ma-crossover' (10/30) is about 0.90 on the reference data, under the old
0.95 correlation limit. Expected: refused by the originality check, explained by 'ma-crossover'.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class SlowerTrend(Strategy):
    name = "slower-trend"
    version = "1.0.0"
    author = "Copycat"
    payout_address = "0x000000000000000000000000000000000000c0de"
    description = "Moving averages, tuned."
    params: ClassVar[Mapping[str, Any]] = {"fast": 14, "slow": 40, "scale": 50.0}
    warmup_bars = 39

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"].astype("float64")
        fast = close.rolling(self.p["fast"]).mean()
        slow = close.rolling(self.p["slow"]).mean()
        return np.tanh(self.p["scale"] * (fast / slow - 1.0))
