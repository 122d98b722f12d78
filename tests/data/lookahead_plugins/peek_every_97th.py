"""Looks ahead at every 97th bar only (about 1 % of the bars)."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class PeekEvery97th(Strategy):
    name = "peek-every-97th"
    version = "1.0.0"
    author = "Cheater Three"
    payout_address = "0x00000000000000000000000000000000000000c3"
    description = "Causal momentum, but at every 97th bar the sign of the next bar's return."
    warmup_bars = 12

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        honest = np.tanh(close.pct_change(12) * 20.0)
        peek = np.sign(close.shift(-1) - close)
        bar = np.arange(len(candles))
        return honest.where((bar % 97 != 0) | peek.isna(), peek)
