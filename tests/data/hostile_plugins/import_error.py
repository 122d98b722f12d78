"""HOSTILE TEST PLUGIN: depends on a package that does not exist. Expected: LOAD FAILED."""

import agora_nonexistent_dependency  # noqa: F401
import numpy as np
import pandas as pd

from agent.plugins import Strategy


class ImportError_(Strategy):
    name = "import-error"

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(candles))
