"""RSI mean reversion: buy what has fallen hard lately, shun what has risen hard."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class RSIReversion(Strategy):
    """Lean against recent moves as measured by Wilder's relative strength index.

    `(50 - RSI) / 50` equals `(avg_loss - avg_gain) / (avg_loss + avg_gain)`, so the signal
    is the balance of recent losses over gains: all losses (RSI 0, oversold) gives +1.
    """

    name = "rsi-reversion"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "RSI mean reversion: Wilder's RSI over `window` bars (exponential averages of gains and "
        "losses with alpha = 1/window); signal = (50 - RSI) / 50, so oversold (RSI 0) gives +1, "
        "overbought (RSI 100) gives -1, RSI 50 or an unchanged price gives 0."
    )
    params: ClassVar[Mapping[str, Any]] = {"window": 14}
    warmup_bars = 14  # window: the first change is at bar 1, the average needs `window` of them

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        window = self.p["window"]
        if not (isinstance(window, int) and not isinstance(window, bool) and window >= 1):
            raise PluginError(f"strategy {self.name!r}: window={window!r} must be an integer >= 1")
        self.require_warmup(window, f"window={window}")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return (50 - RSI) / 50, NaN for the first `window` bars.

        The averages are pandas' recursive EWM (`adjust=False`) started at the first change,
        a common form of Wilder's smoothing that is exactly causal; Wilder's own seed (a plain
        mean of the first `window` changes) differs only in the first few dozen bars.
        """
        window = self.p["window"]
        change = candles["close"].astype("float64").diff()
        smoothing = {"alpha": 1.0 / window, "adjust": False, "min_periods": window}
        avg_gain = change.clip(lower=0.0).ewm(**smoothing).mean()
        avg_loss = (-change).clip(lower=0.0).ewm(**smoothing).mean()
        total = avg_gain + avg_loss
        rsi = 100.0 * avg_gain / total.where(total > 0.0)
        rsi = rsi.mask(total == 0.0, 50.0)  # an unchanged price is neither bought nor sold
        return ((50.0 - rsi) / 50.0).clip(-1.0, 1.0)
