"""The candle schema shared by every source, the store and the quality checks.

A candle frame is a pandas DataFrame with the columns in `CANDLE_COLUMNS`: `open_time` is the
bar's open as integer milliseconds since the Unix epoch (UTC); prices and volume are floats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from agent.errors import ConfigError, UsageError

CANDLE_COLUMNS: tuple[str, ...] = ("open_time", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TIMEFRAME = re.compile(r"^(\d+)([smhdw])$")


def timeframe_ms(timeframe: str) -> int:
    """Return the length of a ccxt-style timeframe ("1m", "4h", "1d") in milliseconds."""
    match = _TIMEFRAME.match(timeframe.strip()) if isinstance(timeframe, str) else None
    if not match or int(match.group(1)) == 0:
        raise ConfigError(
            f"timeframe {timeframe!r} is not valid: expected a count and a unit "
            "among s, m, h, d, w (for example 1m, 15m, 1h, 4h, 1d)"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def format_timeframe(ms: int) -> str:
    """Format a bar length in milliseconds as a timeframe ("1h", "5m", "90s"; else "250 ms")."""
    for unit, unit_ms in sorted(_UNIT_MS.items(), key=lambda item: -item[1]):
        if ms > 0 and ms % unit_ms == 0:
            return f"{ms // unit_ms}{unit}"
    return f"{ms} ms"


def bars_per_year(timeframe: str, days_per_year: float = 365.0) -> float:
    """Return how many bars of `timeframe` make a year (crypto markets trade every day)."""
    return days_per_year * 86_400_000 / timeframe_ms(timeframe)


_MIN_MS = -(pd.Timestamp.min.value // -1_000_000)
_MAX_MS = pd.Timestamp.max.value // 1_000_000
"""The times pandas can hold (1677-09-21 to 2262-04-11), in epoch milliseconds."""


def _out_of_range(text: object, what: str) -> UsageError:
    return UsageError(
        f"{what} {text!r} is out of range: use a time from {format_time_ms(_MIN_MS)} to "
        f"{format_time_ms(_MAX_MS)}"
    )


def parse_time_ms(text: str | int | float | datetime, *, what: str = "time") -> int:
    """Parse a user-given time (ISO 8601 date/time or epoch ms) into UTC milliseconds.

    Raises:
        UsageError: not a date, or a time outside the years 1677-2262 that pandas can hold.
    """
    if isinstance(text, int | float) or (isinstance(text, str) and text.strip().isdigit()):
        ms = float(text) if isinstance(text, float) else int(text)
        if not _MIN_MS <= ms <= _MAX_MS:  # NaN fails this too
            raise _out_of_range(text, what)
        return int(ms)
    try:
        stamp = pd.Timestamp(text)
    except OverflowError as e:  # pd.errors.OutOfBoundsDatetime is a ValueError
        raise _out_of_range(text, what) from e
    except (ValueError, TypeError) as e:
        if isinstance(e, pd.errors.OutOfBoundsDatetime):
            raise _out_of_range(text, what) from e
        raise UsageError(
            f"{what} {text!r} is not a date: use ISO 8601 (2024-01-01 or 2024-01-01T12:00Z)"
        ) from e
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    try:
        return int(stamp.tz_convert("UTC").value // 1_000_000)
    except OverflowError as e:  # a date pandas parses but cannot hold in nanoseconds
        raise _out_of_range(text, what) from e


def format_time_ms(ms: int) -> str:
    """Format UTC milliseconds as ISO 8601 (`2024-01-01T00:00:00Z`)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class SeriesKey:
    """Identifies one stored candle series."""

    source: str
    symbol: str
    timeframe: str

    def __str__(self) -> str:
        return f"{self.source}:{self.symbol}:{self.timeframe}"


def empty_candles() -> pd.DataFrame:
    """Return an empty candle frame with the right columns and dtypes."""
    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in CANDLE_COLUMNS})
    return frame.astype({"open_time": "int64"})
