"""HOSTILE TEST PLUGIN: writes a file outside its directory, hides the error, returns zeros.

Expected: the write is refused and the run fails naming the path, even though the strategy
swallowed the PermissionError and returned a valid-looking signal.
"""

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class WritesOutside(Strategy):
    name = "writes-outside"
    description = "Tries to write params['target'] (a path outside its directory)."
    params = {"target": "/var/tmp/agora-hostile-writes-outside.txt"}  # noqa: RUF012

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        try:
            with open(self.p["target"], "w") as handle:
                handle.write("pwned")
        except OSError:
            pass
        return np.zeros(len(candles))
