"""HOSTILE TEST PLUGIN: returns one value fewer than there are candles. Expected: refused."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class WrongLength(Strategy):
    name = "wrong-length"
    description = "Drops the last bar."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(candles) - 1)
