"""ORIGINAL (the control): how unusual this bar's volume is against the last two days.

Every shipped strategy reads prices only, so they explain almost none of it. Expected: passes
every check, originality included.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class VolumeSurge(Strategy):
    name = "volume-surge"
    version = "1.0.0"
    author = "Someone Original"
    payout_address = "0x00000000000000000000000000000000000000cc"
    description = "z-score of log volume over a trailing 48-bar window, squashed."
    params: ClassVar[Mapping[str, Any]] = {"window": 48}
    warmup_bars = 47

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        volume = np.log1p(candles["volume"].astype("float64"))
        window = volume.rolling(self.p["window"])
        spread = window.std(ddof=0)
        score = (volume - window.mean()) / spread.where(spread > 0.0)
        return np.tanh(score / 2.0).fillna(0.0).where(spread.notna())
