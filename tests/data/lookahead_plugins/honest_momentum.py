"""An honest plugin: a squashed 24-bar return and its 12-bar mean (causal, never quarantined)."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class HonestMomentum(Strategy):
    name = "honest-momentum"
    version = "1.0.0"
    author = "Honest Contributor"
    payout_address = "0x00000000000000000000000000000000000000a1"
    description = "Squashed 24-bar return, smoothed over 12 bars."
    warmup_bars = 36

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        momentum = np.tanh(candles["close"].pct_change(24) * 10.0)
        return momentum.rolling(12).mean() + 0.0 * candles["volume"].ewm(span=20).mean()
