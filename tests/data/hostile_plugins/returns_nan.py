"""HOSTILE TEST PLUGIN: returns NaN after its warm-up. Expected: refused, naming the bar."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class ReturnsNaN(Strategy):
    name = "returns-nan"
    description = "NaN at bar 50, past its 10-bar warm-up."
    warmup_bars = 10

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        values = np.zeros(len(candles))
        values[:10] = np.nan
        values[50] = np.nan
        return values
