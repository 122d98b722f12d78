"""A third-party strategy, installed as a package and found through its entry point.

Where the close sits inside the range of the last `window` bars: +1 at the top, -1 at the
bottom. Causal: the rolling window ends at the current bar.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.plugins import Strategy


class RangePosition(Strategy):
    name = "range-position"
    version = "0.1.0"
    author = "An outside contributor"
    payout_address = "0x00000000000000000000000000000000000000aa"
    description = "Position of the close within the rolling high-low range, scaled to [-1, 1]."
    params: ClassVar[Mapping[str, Any]] = {"window": 20}
    warmup_bars = 19

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        window = self.p["window"]
        high = candles["high"].rolling(window).max()
        low = candles["low"].rolling(window).min()
        span = (high - low).replace(0.0, np.nan)
        return (2.0 * (candles["close"] - low) / span - 1.0).clip(-1.0, 1.0)
