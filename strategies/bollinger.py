"""Bollinger-band mean reversion: fade closes that stray far from their moving average."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class BollingerReversion(Strategy):
    """Lean against the close's distance from its moving average, in rolling standard deviations.

    The band width `k` sets where the signal saturates: a close on the lower band (z = -k)
    is a full +1, on the upper band a full -1, and anything beyond is clipped.
    """

    name = "bollinger-reversion"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "Bollinger-band mean reversion: z = (close - SMA(close, window)) / std(close, window) "
        "(population std, ddof=0, as Bollinger defined the bands); signal = clip(-z / k, -1, 1), "
        "+1 at or below the lower band, -1 at or above the upper band, 0 on the average."
    )
    params: ClassVar[Mapping[str, Any]] = {"window": 20, "k": 2.0}
    warmup_bars = 19  # window - 1

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        window, k = self.p["window"], self.p["k"]
        if not (isinstance(window, int) and not isinstance(window, bool) and window >= 2):
            raise PluginError(f"strategy {self.name!r}: window={window!r} must be an integer >= 2")
        self.require_warmup(window - 1, f"window={window}")
        if not (isinstance(k, int | float) and not isinstance(k, bool) and k > 0):
            raise PluginError(f"strategy {self.name!r}: k={k!r} must be a number > 0")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return clip(-z / k, -1, 1), NaN for the first `window - 1` bars.

        A window of identical closes has no spread and no deviation, so it gives 0 rather
        than the 0 / 0 that would break the agent's input.
        """
        window = self.p["window"]
        close = candles["close"].astype("float64")
        mean = close.rolling(window).mean()
        std = close.rolling(window).std(ddof=0)
        z = (close - mean) / std.where(std > 0.0)
        z = z.mask(std == 0.0, 0.0)
        return (-z / self.p["k"]).clip(-1.0, 1.0)
