"""TEST FIXTURE, not a strategy: reads the synthetic market's hidden planted series.

`PlantedOracle` sees what no real strategy can, the component the synthetic market planted in
its returns (`agent.market.synthetic`), so it predicts the next bar with a known information
coefficient. Tests use it to check that the agent learns a real edge and that attribution pays
the strategy that carries it. It must never be shipped, listed or offered to users: on real
markets the hidden series does not exist and it raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.market.synthetic import PLANTED_SERIES_NAME
from agent.plugins.interface import HIDDEN_ATTR, Strategy


class PlantedOracle(Strategy):
    """Expose the synthetic market's planted series as a signal (test fixture only).

    `planted[t]` is known at the close of bar t and has unit variance, so halving and clipping
    it keeps about 95% of the values unclipped and preserves its correlation with bar t+1.
    """

    name = "planted-oracle"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "TEST FIXTURE, not a real strategy; never offer it to users. Reads the synthetic "
        "market's hidden 'planted' series (known at bar t's close, predictive of bar t+1) and "
        "returns clip(planted / 2, -1, 1). Fails on any market without that series."
    )
    params: ClassVar[Mapping[str, Any]] = {"divisor": 2.0}
    warmup_bars = 0
    hidden_inputs = (PLANTED_SERIES_NAME,)

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        divisor = self.p["divisor"]
        if not (isinstance(divisor, int | float) and not isinstance(divisor, bool) and divisor > 0):
            raise PluginError(f"strategy {self.name!r}: divisor={divisor!r} must be a number > 0")

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        """Return clip(planted / divisor, -1, 1), one value per candle.

        Raises:
            PluginError: the candles carry no planted series, or one of the wrong length.
        """
        hidden = candles.attrs.get(HIDDEN_ATTR) or {}
        if PLANTED_SERIES_NAME not in hidden:
            raise PluginError(
                f"strategy {self.name!r} is a test fixture that needs the hidden series "
                f"{PLANTED_SERIES_NAME!r} in candles.attrs[{HIDDEN_ATTR!r}]; it exists only for "
                "the synthetic market, and only strategies declaring it in hidden_inputs get it"
            )
        planted = np.asarray(hidden[PLANTED_SERIES_NAME], dtype="float64")
        if planted.shape != (len(candles),):
            raise PluginError(
                f"strategy {self.name!r}: hidden series {PLANTED_SERIES_NAME!r} has shape "
                f"{planted.shape}, expected ({len(candles)},) to align with the candles"
            )
        return np.clip(planted / self.p["divisor"], -1.0, 1.0)
