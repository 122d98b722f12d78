"""The interface a contributor implements: one class, one vectorised method.

A strategy turns a candle frame into a signal in [-1, 1] per bar: -1 strongly prefers no
exposure, +1 strongly prefers full exposure, 0 is neutral. The signal at bar t may use only
candles up to and including bar t (it is causal); bars inside the warm-up may be NaN.

    class MyStrategy(Strategy):
        name = "my-strategy"
        version = "1.0.0"
        author = "Ada"
        payout_address = "0x…"
        description = "What it does, in a sentence."
        warmup_bars = 20
        params = {"window": 20}

        def signal(self, candles: pd.DataFrame) -> pd.Series:
            close = candles["close"]
            return np.tanh(close.pct_change(self.p["window"]) * 10)

`INTERFACE_VERSION` grows only when this contract changes incompatibly; a strategy states the
version it was written for, and Agora refuses versions it does not support.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from agent.errors import PluginError

INTERFACE_VERSION = 1
SUPPORTED_INTERFACE_VERSIONS = frozenset({1})
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{1,47}$")
HIDDEN_ATTR = "agora_hidden"
"""Key of `candles.attrs` holding hidden series, given only to strategies that declare them."""


@dataclass(frozen=True)
class StrategyInfo:
    """A strategy's metadata, as listed, validated and registered on-chain."""

    name: str
    version: str
    author: str
    payout_address: str | None
    description: str
    warmup_bars: int
    params: Mapping[str, Any]
    interface_version: int
    hidden_inputs: tuple[str, ...]


class Strategy(ABC):
    """Base class of every strategy plugin. Subclass it, set the metadata, write `signal`."""

    interface_version: ClassVar[int] = INTERFACE_VERSION
    name: ClassVar[str] = ""
    version: ClassVar[str] = "0.1.0"
    author: ClassVar[str] = ""
    payout_address: ClassVar[str | None] = None
    description: ClassVar[str] = ""
    warmup_bars: ClassVar[int] = 0
    params: ClassVar[Mapping[str, Any]] = {}
    hidden_inputs: ClassVar[tuple[str, ...]] = ()
    """Names of hidden series this strategy reads (test fixtures only, e.g. "planted")."""

    def __init__(self, **overrides: Any) -> None:
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise PluginError(
                f"strategy {self.name!r}: unknown parameter(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(self.params)) or 'none'}"
            )
        self.p: dict[str, Any] = {**self.params, **overrides}

    @abstractmethod
    def signal(self, candles: pd.DataFrame) -> pd.Series | np.ndarray:
        """Return one value in [-1, 1] per candle, aligned to `candles`, using no future bar.

        Args:
            candles: columns open_time (ms, UTC), open, high, low, close, volume, oldest first.
        """

    def require_warmup(self, needed_bars: int, because: str) -> None:
        """Refuse parameters that need a longer warm-up than the class declares.

        `warmup_bars` is part of the strategy's registered metadata, so a parameter override
        may shorten the warm-up but never lengthen it.
        """
        if needed_bars > self.warmup_bars:
            raise PluginError(
                f"strategy {self.name!r}: {because} needs {needed_bars} warm-up bars, more than "
                f"the declared {self.warmup_bars}; subclass it with a larger warmup_bars"
            )

    @classmethod
    def info(cls) -> StrategyInfo:
        """Return the metadata of this strategy class."""
        return StrategyInfo(
            name=cls.name,
            version=cls.version,
            author=cls.author,
            payout_address=cls.payout_address,
            description=cls.description,
            warmup_bars=cls.warmup_bars,
            params=dict(cls.params),
            interface_version=cls.interface_version,
            hidden_inputs=tuple(cls.hidden_inputs),
        )


def check_metadata(cls: type) -> StrategyInfo:
    """Check that `cls` is a well-formed strategy class and return its metadata.

    Raises:
        PluginError: naming the first thing that is wrong.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise PluginError(f"{cls!r} is not a subclass of agent.plugins.Strategy")
    if getattr(cls, "__abstractmethods__", None):
        raise PluginError(f"strategy class {cls.__name__} does not implement signal()")
    info = cls.info()
    if not NAME_PATTERN.match(info.name or ""):
        raise PluginError(
            f"strategy class {cls.__name__}: name {info.name!r} must be 2-48 characters of "
            "lower-case letters, digits, '-' or '_', starting with a letter"
        )
    if info.interface_version not in SUPPORTED_INTERFACE_VERSIONS:
        raise PluginError(
            f"strategy {info.name!r} targets interface version {info.interface_version}; this "
            f"Agora supports {sorted(SUPPORTED_INTERFACE_VERSIONS)}"
        )
    if not isinstance(info.warmup_bars, int) or info.warmup_bars < 0:
        raise PluginError(f"strategy {info.name!r}: warmup_bars must be an integer >= 0")
    if info.payout_address is not None and not re.fullmatch(
        r"0x[0-9a-fA-F]{40}", info.payout_address
    ):
        raise PluginError(
            f"strategy {info.name!r}: payout_address {info.payout_address!r} is not an address"
        )
    return info


def as_signal(values: Any, length: int, *, name: str, warmup_bars: int = 0) -> np.ndarray:
    """Turn a strategy's output into a float64 array, refusing anything malformed.

    NaN is allowed only inside the warm-up; everything else must lie in [-1, 1].
    """
    try:
        array = np.asarray(values, dtype="float64")
    except (TypeError, ValueError) as e:
        raise PluginError(f"strategy {name!r} returned something that is not numbers: {e}") from e
    if array.ndim != 1:
        raise PluginError(f"strategy {name!r} returned an array of shape {array.shape}, not 1-D")
    if len(array) != length:
        raise PluginError(
            f"strategy {name!r} returned {len(array)} values for {length} candles "
            "(one value per candle is required)"
        )
    tail = array[warmup_bars:]
    nan = np.isnan(tail)
    if nan.any():
        at = warmup_bars + int(np.flatnonzero(nan)[0])
        raise PluginError(
            f"strategy {name!r} returned NaN at bar {at}, after its warm-up of {warmup_bars} bars"
        )
    finite = array[~np.isnan(array)]
    outside = (finite < -1.0) | (finite > 1.0) | ~np.isfinite(finite)
    if outside.any():
        bad = finite[outside][0]
        raise PluginError(f"strategy {name!r} returned {bad}, outside [-1, 1]")
    return array
