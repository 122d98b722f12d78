"""HOSTILE TEST PLUGIN: peeks at the next bar's return through shift(-1).

It fills the NaN it leaves at the end, so its output has a valid shape: only the look-ahead
check can catch it. Expected: refused by causality, naming the first bar where it peeked.
"""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class LookaheadShift(Strategy):
    name = "lookahead-shift"
    description = "Tomorrow's return, today (shift(-1))."

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        next_return = candles["close"].pct_change().shift(-1)
        return np.tanh(next_return * 50.0).fillna(0.0)
