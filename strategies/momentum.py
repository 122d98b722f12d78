"""Time-series momentum: follow the asset's own recent return, measured in units of its risk."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy


class TSMomentum(Strategy):
    """Prefer exposure after a rise that is large relative to the asset's recent volatility.

    Dividing the `lookback`-bar log return by its expected spread under a random walk
    (`sigma * sqrt(lookback)`) makes it a t-statistic-like score, so one default works in
    calm and wild markets alike and across timeframes.
    """

    name = "ts-momentum"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "Time-series momentum: score = log(close_t / close_{t-lookback}) / (sigma * "
        "sqrt(lookback)), sigma the sample std (ddof=1) of the last `vol_window` one-bar log "
        "returns; signal = tanh(score / scale), towards +1 after a rise, -1 after a fall."
    )
    params: ClassVar[Mapping[str, Any]] = {"lookback": 24, "vol_window": 48, "scale": 1.0}
    warmup_bars = 48  # max(lookback, vol_window): both need that many past one-bar returns

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        lookback, vol_window = self.p["lookback"], self.p["vol_window"]
        if not (_is_window(lookback, 1) and _is_window(vol_window, 2)):
            raise PluginError(
                f"strategy {self.name!r}: lookback={lookback!r} must be an integer >= 1 and "
                f"vol_window={vol_window!r} an integer >= 2"
            )
        self.require_warmup(
            max(lookback, vol_window), f"lookback={lookback} and vol_window={vol_window}"
        )
        scale = self.p["scale"]
        if not (isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0):
            raise PluginError(f"strategy {self.name!r}: scale={scale!r} must be a number > 0")

    def signal(self, candles: pd.DataFrame) -> pd.Series:
        """Return tanh(score / scale), NaN for the first `max(lookback, vol_window)` bars.

        A window without any price change has no volatility to scale by; it gives 0.
        """
        lookback = self.p["lookback"]
        log_close = np.log(candles["close"].astype("float64"))
        trend = log_close - log_close.shift(lookback)
        sigma = log_close.diff().rolling(self.p["vol_window"]).std(ddof=1)
        score = trend / (sigma.where(sigma > 0.0) * math.sqrt(lookback))
        score = score.mask(sigma == 0.0, 0.0)
        return np.tanh(score / self.p["scale"])


def _is_window(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum
