"""COPY ATTACK: the shipped moving-average crossover scaled by 0.9, plus deterministic noise.

The noise is a fixed function of the bar's position, so two runs agree (the determinism check)
and a bar's value never depends on later candles (the causality check). Its correlation with
'ma-crossover' is 0.92-0.94 on the reference data, under the old 0.95 correlation limit.
Expected: refused by the originality check, explained by 'ma-crossover'.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class GentleTrend(Strategy):
    name = "gentle-trend"
    version = "1.0.0"
    author = "Copycat"
    payout_address = "0x000000000000000000000000000000000000c0de"
    description = "A calmer trend signal."
    params: ClassVar[Mapping[str, Any]] = {"noise": 0.25}
    warmup_bars = 29

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        close = candles["close"].astype("float64")
        copy = np.tanh(50.0 * (close.rolling(10).mean() / close.rolling(30).mean() - 1.0))
        bar = np.arange(len(candles), dtype="float64")
        noise = (np.sin(bar * 12.9898) * 43758.5453) % 1.0 * 2.0 - 1.0  # in [-1, 1)
        return np.clip(0.9 * copy.to_numpy() + self.p["noise"] * noise, -1.0, 1.0)
