"""Moving-average crossover: trend following on the spread between a fast and a slow mean."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class MACrossover(Strategy):
    """Prefer exposure while the fast simple moving average sits above the slow one.

    The output is continuous rather than a ±1 switch, so the agent sees how far apart the
    averages are, not only which one is on top.
    """

    name = "ma-crossover"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "Moving-average crossover (trend following): signal = tanh(scale * (SMA(close, fast) / "
        "SMA(close, slow) - 1)), towards +1 while the fast average is above the slow one, "
        "towards -1 below, 0 when they are equal."
    )
    params: ClassVar[Mapping[str, Any]] = {"fast": 10, "slow": 30, "scale": 50.0}
    warmup_bars = 29  # slow - 1: the slow average needs `slow` closes

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        fast, slow = self.p["fast"], self.p["slow"]
        if not (_is_window(fast) and _is_window(slow) and fast < slow):
            raise PluginError(
                f"strategy {self.name!r}: fast={fast!r} and slow={slow!r} must be integers "
                "with 1 <= fast < slow"
            )
        self.require_warmup(slow - 1, f"slow={slow}")
        if not _is_positive(self.p["scale"]):
            raise PluginError(f"strategy {self.name!r}: scale={self.p['scale']!r} must be > 0")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return the squashed relative spread of the two averages (NaN for `slow - 1` bars).

        The relative spread, not the difference in price units, keeps the signal comparable
        across assets; `scale` sets how wide a spread counts as a strong trend (the default
        suits hourly bars of a volatile asset: a 2% spread gives about 0.76).
        """
        close = candles["close"].astype("float64")
        fast = close.rolling(self.p["fast"]).mean()
        slow = close.rolling(self.p["slow"]).mean()
        return np.tanh(self.p["scale"] * (fast / slow - 1.0))


def _is_window(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0
