"""Looks ahead everywhere except at evenly spaced cut points (every 50th bar and the last)."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class PeekOffGrid(Strategy):
    name = "peek-off-grid"
    version = "1.0.0"
    author = "Cheater Two"
    payout_address = "0x00000000000000000000000000000000000000c2"
    description = "Reads the next close, except at the bars a fixed check would cut at."
    warmup_bars = 12

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        close = candles["close"]
        honest = np.tanh(close.pct_change(12) * 20.0)
        peek = np.tanh((close.shift(-1) / close - 1.0) * 50.0)
        bar = np.arange(len(candles))
        on_grid = (bar % 50 == 0) | (bar == len(candles) - 1)
        return honest.where(on_grid | peek.isna(), peek)
