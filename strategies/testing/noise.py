"""TEST FIXTURE: a strategy of pure, reproducible noise, with no edge on any market.

Each bar's value is a hash of (seed, open_time), so it is deterministic, independent of every
other bar and unaffected by which other candles are present: dropping future candles, or
starting the frame later, leaves a bar's value unchanged. Tests use it as a contributor that
should earn nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.plugins.interface import Strategy

_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_MAX_SEED = 2**64 - 1


class NoiseStrategy(Strategy):
    """Return a uniform pseudo-random value in [-1, 1) per bar, keyed by seed and open time (test
    fixture only)."""

    name = "noise"
    version = "1.0.0"
    author = "Agora"
    payout_address = None
    description = (
        "TEST FIXTURE, not a real strategy: uniform noise in [-1, 1) per bar, a hash of "
        "(seed, open_time), so it is deterministic and causal and carries no information."
    )
    params: ClassVar[Mapping[str, Any]] = {"seed": 0}
    warmup_bars = 0

    def __init__(self, **overrides: Any) -> None:
        super().__init__(**overrides)
        seed = self.p["seed"]
        if not (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= _MAX_SEED):
            raise PluginError(
                f"strategy {self.name!r}: seed={seed!r} must be an integer in [0, 2**64 - 1]"
            )

    def signal(self, candles: pd.DataFrame) -> np.ndarray:
        """Return 2 * u - 1 with u = splitmix64(splitmix64(seed) ^ open_time) / 2**64."""
        key = _splitmix64(np.array([self.p["seed"]], dtype="uint64"))
        open_time = candles["open_time"].to_numpy(dtype="int64").astype("uint64")
        bits = _splitmix64(open_time ^ key)
        uniform = (bits >> np.uint64(11)).astype("float64") * 2.0**-53
        return 2.0 * uniform - 1.0


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Return the splitmix64 finaliser of each element: a bijection whose outputs look
    independent even for consecutive inputs such as evenly spaced open times."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX_1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX_2)
    return x ^ (x >> np.uint64(31))
