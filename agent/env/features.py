"""Normalised market features, computed once per data set (never inside `env.step`).

Every feature at bar t uses candles up to and including bar t only, and none is a raw price
level: log returns scaled by a slow volatility estimate, the log ratio of fast to slow
realised volatility, and the log change of volume against its own average. Values are clipped
to [-5, 5] so one crazy bar cannot blow up the policy's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURE_NAMES: tuple[str, ...] = ("scaled_return", "vol_ratio", "volume_change")
CLIP = 5.0


@dataclass(frozen=True)
class FeatureParams:
    """Look-back lengths of the feature estimators, in bars."""

    fast_vol_bars: int = 24
    slow_vol_bars: int = 240
    volume_bars: int = 48

    @property
    def warmup_bars(self) -> int:
        """Bars before the features are meaningful (the estimators need history)."""
        return max(self.fast_vol_bars, self.volume_bars)


def log_returns(close: np.ndarray) -> np.ndarray:
    """Return log(close_t / close_{t-1}), with 0 for the first bar."""
    close = np.asarray(close, dtype="float64")
    out = np.zeros_like(close)
    out[1:] = np.diff(np.log(close))
    return out


def market_features(candles: pd.DataFrame, params: FeatureParams | None = None) -> np.ndarray:
    """Return a float32 array [bars, len(FEATURE_NAMES)] of causal, normalised features."""
    params = params or FeatureParams()
    returns = pd.Series(log_returns(candles["close"].to_numpy()))
    squared = returns.pow(2)
    fast_var = squared.ewm(span=params.fast_vol_bars, adjust=False).mean()
    slow_var = squared.ewm(span=params.slow_vol_bars, adjust=False).mean()
    floor = 1e-12
    slow_vol = np.sqrt(np.maximum(slow_var.to_numpy(), floor))
    fast_vol = np.sqrt(np.maximum(fast_var.to_numpy(), floor))
    # scale today's return by yesterday's slow vol estimate: no part of bar t scales itself
    prior_slow_vol = np.concatenate([[slow_vol[0]], slow_vol[:-1]])
    scaled_return = returns.to_numpy() / np.maximum(prior_slow_vol, 1e-9)
    vol_ratio = np.log(fast_vol / slow_vol)
    volume = np.log1p(candles["volume"].to_numpy(dtype="float64"))
    volume_mean = pd.Series(volume).ewm(span=params.volume_bars, adjust=False).mean().to_numpy()
    volume_change = volume - np.concatenate([[volume_mean[0]], volume_mean[:-1]])
    features = np.column_stack([scaled_return, vol_ratio, volume_change])
    features[0] = 0.0
    return np.clip(np.nan_to_num(features, nan=0.0), -CLIP, CLIP).astype("float32")
