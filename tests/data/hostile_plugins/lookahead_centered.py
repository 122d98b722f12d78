"""HOSTILE TEST PLUGIN: a centred rolling window, which uses the 10 bars after each bar.

Expected: refused by causality, naming the first bar whose value changed.
"""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class LookaheadCentered(Strategy):
    name = "lookahead-centered"
    description = "Price against a centred 21-bar mean."
    warmup_bars = 10

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        centred = close.rolling(21, center=True, min_periods=1).mean()
        return np.tanh((close / centred - 1.0) * 50.0)
