"""HOSTILE TEST PLUGIN: never returns (a busy loop). Expected: timed out, or the CPU limit."""

import pandas as pd

from agent.plugins import Strategy


class InfiniteLoop(Strategy):
    name = "infinite-loop"
    description = "Spins forever inside signal()."

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        while True:
            pass
