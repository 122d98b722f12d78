"""HOSTILE TEST PLUGIN: raises inside signal(). Expected: the exception type, text and line."""

import pandas as pd

from agent.plugins import Strategy


class Raises(Strategy):
    name = "raises"
    description = "Raises ValueError."

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        raise ValueError("the strategy exploded on purpose")
