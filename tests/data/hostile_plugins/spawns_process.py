"""HOSTILE TEST PLUGIN: runs a shell command that would create params['target'].

Expected: refused ("tried to start a process"); the file is not created.
"""

import os

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class SpawnsProcess(Strategy):
    name = "spawns-process"
    description = "Calls os.system()."
    params = {"target": "/tmp/agora-hostile-spawns-process.txt"}  # noqa: RUF012

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        os.system(f"touch {self.p['target']}")
        return np.zeros(len(candles))
