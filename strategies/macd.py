"""MACD: trend following on the gap between a fast and a slow exponential moving average."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class MACD(Strategy):
    """Prefer exposure while the MACD line is above its signal line (the histogram is positive).

    The histogram is divided by the close so that it is a fraction of price, comparable across
    assets and price levels, then squashed with tanh so it stays continuous inside [-1, 1].
    """

    name = "macd"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "MACD histogram: macd = EMA(close, fast) - EMA(close, slow), line = EMA(macd, signal), "
        "signal = tanh(scale * (macd - line) / close); towards +1 while MACD is above its signal "
        "line (momentum rising), towards -1 below it."
    )
    params: ClassVar[Mapping[str, Any]] = {"fast": 12, "slow": 26, "signal": 9, "scale": 300.0}
    warmup_bars = 33  # slow + signal - 2: the signal line's EMA starts when the slow one is ready

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        fast, slow, line = self.p["fast"], self.p["slow"], self.p["signal"]
        if not (_is_window(fast) and _is_window(slow) and _is_window(line) and fast < slow):
            raise PluginError(
                f"strategy {self.name!r}: fast={fast!r}, slow={slow!r}, signal={line!r} must be "
                "integers >= 1 with fast < slow"
            )
        self.require_warmup(slow + line - 2, f"slow={slow} and signal={line}")
        scale = self.p["scale"]
        if not (isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0):
            raise PluginError(f"strategy {self.name!r}: scale={scale!r} must be a number > 0")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return tanh(scale * histogram / close), NaN for the first `slow + signal - 2` bars.

        The EMAs are the recursive kind (`adjust=False`, span n so alpha = 2 / (n + 1)) started
        at the first close, as charting packages compute them; they are exactly causal. The
        warm-up hides the bars where the start still dominates. The default `scale` suits
        hourly bars of a volatile asset (a histogram of 0.2% of price gives about 0.54).
        """
        close = candles["close"].astype("float64")
        fast = close.ewm(span=self.p["fast"], adjust=False).mean()
        slow = close.ewm(span=self.p["slow"], adjust=False).mean()
        macd = fast - slow
        line = macd.ewm(span=self.p["signal"], adjust=False).mean()
        values = np.tanh(self.p["scale"] * (macd - line) / close)
        values.iloc[: self.p["slow"] + self.p["signal"] - 2] = np.nan
        return values


def _is_window(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
