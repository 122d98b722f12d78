"""HOSTILE TEST PLUGIN: returns values outside [-1, 1]. Expected: refused, naming the value."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class OutOfRange(Strategy):
    name = "out-of-range"
    description = "Returns 2.5 everywhere."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.full(len(candles), 2.5)
