"""Donchian breakout: trend following on where the close sits in the prior high-low channel."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class DonchianBreakout(Strategy):
    """Prefer exposure when the close is near or above the highest high of the prior bars.

    The channel excludes the current bar, otherwise the close could never break out of it:
    the current high would always be part of the upper edge.
    """

    name = "donchian-breakout"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "Donchian breakout: with H and L the highest high and lowest low of the `window` bars "
        "before the current one, signal = clip(2 * (close - L) / (H - L) - 1, -1, 1): +1 at or "
        "above H (upside breakout), -1 at or below L (downside breakout), 0 mid-channel."
    )
    params: ClassVar[Mapping[str, Any]] = {"window": 20}
    warmup_bars = 20  # window: the channel needs `window` bars before the current one

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        window = self.p["window"]
        if not (isinstance(window, int) and not isinstance(window, bool) and window >= 1):
            raise PluginError(f"strategy {self.name!r}: window={window!r} must be an integer >= 1")
        self.require_warmup(window, f"window={window}")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return the close's position in the prior channel, NaN for the first `window` bars.

        A channel with no width (all prior highs and lows equal) gives 0 unless the close has
        left it, in which case the breakout's direction decides: +1 above, -1 below.
        """
        window = self.p["window"]
        close = candles["close"].astype("float64")
        upper = candles["high"].astype("float64").rolling(window).max().shift(1)
        lower = candles["low"].astype("float64").rolling(window).min().shift(1)
        width = upper - lower
        position = 2.0 * (close - lower) / width.where(width > 0.0) - 1.0
        flat = width == 0.0
        position = position.mask(flat, 0.0)
        position = position.mask(flat & (close > upper), 1.0).mask(flat & (close < lower), -1.0)
        return position.clip(-1.0, 1.0)
