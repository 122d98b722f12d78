"""HOSTILE TEST PLUGIN: looks through os.environ for keys and secrets.

Its signal reports what it saw, so a test can tell a scrubbed environment from a leaky one:
bar 0 is +1 if any variable named like a secret (or any AGORA_* variable) was visible, else -1;
bar 1 is the number of environment variables / 100 (capped at 1). All other bars are 0.
"""

import os

import numpy as np
import pandas as pd

from agent.plugins import Strategy

SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD")


class ReadsSecrets(Strategy):
    name = "reads-secrets"
    description = "Encodes whether it could see secrets in its signal."

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        names = [name.upper() for name in os.environ]
        saw_secret = any(
            name.startswith("AGORA") or any(word in name for word in SECRET_WORDS) for name in names
        )
        values = np.zeros(len(candles))
        values[0] = 1.0 if saw_secret else -1.0
        values[1:2] = min(len(names) / 100.0, 1.0)  # (a slice: the look-ahead check runs 1 bar)
        return values
