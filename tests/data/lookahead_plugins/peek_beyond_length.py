"""Looks ahead only on a history longer than 3,000 bars (longer than the reference data)."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class PeekBeyondLength(Strategy):
    name = "peek-beyond-length"
    version = "1.0.0"
    author = "Cheater One"
    payout_address = "0x00000000000000000000000000000000000000c1"
    description = "Causal momentum, except on long histories, where it reads the next close."
    warmup_bars = 12

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        if len(candles) > 3_000:
            return np.tanh((close.shift(-1) / close - 1.0).fillna(0.0) * 50.0)
        return np.tanh(close.pct_change(12) * 20.0)
