"""HOSTILE TEST PLUGIN: allocates 10 GB. Expected: refused by the memory limit."""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class HugeAllocation(Strategy):
    name = "huge-allocation"
    description = "Asks for a 10 GB array inside signal()."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        ballast = np.ones(10 * 1024**3 // 8)
        return np.zeros(len(candles)) + ballast[0] - 1.0
