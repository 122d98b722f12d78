"""Candle quality checks, run on every write: a batch is either accepted whole or refused.

Accepted batches come back sorted by time with identical duplicates dropped. A batch with a
conflicting duplicate, a NaN or infinity, an inconsistent OHLC, a non-positive price, a negative
volume or a time off the timeframe grid is refused with a `CandleError` that names the row.
Gaps are never filled: `find_gaps` reports them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agent.errors import CandleError
from agent.market.schema import CANDLE_COLUMNS, PRICE_COLUMNS, format_time_ms

RowLabel = Callable[[Hashable], str]


def default_row_label(index: Hashable) -> str:
    return f"row {index}"


@dataclass(frozen=True)
class Gap:
    """Missing bars between two stored candles: `start_ms` is the first missing open time."""

    start_ms: int
    end_ms: int
    missing_bars: int

    def describe(self) -> str:
        return (
            f"{self.missing_bars} bar(s) missing from {format_time_ms(self.start_ms)} "
            f"to {format_time_ms(self.end_ms)}"
        )


def validate_candles(
    frame: pd.DataFrame, timeframe_ms: int, *, row_label: RowLabel = default_row_label
) -> pd.DataFrame:
    """Check a candle batch and return it sorted and de-duplicated, or raise CandleError.

    Args:
        frame: candles with the columns of `CANDLE_COLUMNS`; its index labels the rows in
            error messages (the CSV importer uses line numbers).
        timeframe_ms: bar length; every open time must lie on this grid.
        row_label: turns an index label into the words used in messages.
    """
    missing = [c for c in CANDLE_COLUMNS if c not in frame.columns]
    if missing:
        raise CandleError(f"candles lack column(s) {', '.join(missing)}")
    if frame.empty:
        return frame.loc[:, list(CANDLE_COLUMNS)].astype({"open_time": "int64"})

    values = {}
    for column in CANDLE_COLUMNS:
        try:
            values[column] = pd.to_numeric(frame[column], errors="raise").to_numpy(dtype="float64")
        except (ValueError, TypeError):
            bad = pd.to_numeric(frame[column], errors="coerce").isna() & frame[column].notna()
            _bad_row(frame, bad.to_numpy(), row_label, f"{column} is not a number")

    for column in CANDLE_COLUMNS:
        array = values[column]
        bad = ~np.isfinite(array)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            _bad_row(
                frame, bad, row_label, f"{column} is {array[at]} (NaN and infinity are refused)"
            )

    times = values["open_time"]
    bad = times != np.floor(times)
    if bad.any():
        _bad_row(frame, bad, row_label, "open_time is not a whole number of milliseconds")
    bad = (times % timeframe_ms) != 0
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        _bad_row(
            frame,
            bad,
            row_label,
            f"open_time {format_time_ms(int(times[at]))} is not on the {timeframe_ms} ms bar grid",
        )
    for column in PRICE_COLUMNS:
        bad = values[column] <= 0
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            _bad_row(frame, bad, row_label, f"{column} is {values[column][at]}; prices must be > 0")
    bad = values["volume"] < 0
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        _bad_row(frame, bad, row_label, f"volume is {values['volume'][at]}; volume must be >= 0")

    o, h, lo, c = (values[k] for k in PRICE_COLUMNS)
    checks = (
        (h < lo, "high {h} < low {lo}"),
        (lo > np.minimum(o, c), "low {lo} is above open {o} or close {c}"),
        (h < np.maximum(o, c), "high {h} is below open {o} or close {c}"),
    )
    for bad, template in checks:
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            _bad_row(frame, bad, row_label, template.format(h=h[at], lo=lo[at], o=o[at], c=c[at]))

    clean = pd.DataFrame({column: values[column] for column in CANDLE_COLUMNS}, index=frame.index)
    clean["open_time"] = times.astype("int64")
    return _resolve_duplicates(clean, row_label)


def _bad_row(frame: pd.DataFrame, mask: np.ndarray, label: RowLabel, problem: str) -> None:
    position = int(np.flatnonzero(mask)[0])
    index = frame.index[position]
    row = int(index) if isinstance(index, int | np.integer) else position
    raise CandleError(f"{label(index)}: {problem}", row=row)


def _resolve_duplicates(clean: pd.DataFrame, label: RowLabel) -> pd.DataFrame:
    """Sort by open time and drop identical duplicates; refuse a conflicting one.

    Vectorised: each row is compared with the first row of its open time (in input order).
    The row named is the first conflicting one in time order, then input order.
    """
    ordered = clean.sort_values("open_time", kind="stable")
    times = ordered["open_time"].to_numpy()
    repeat = np.zeros(len(times), dtype=bool)
    repeat[1:] = times[1:] == times[:-1]
    if repeat.any():
        # position of the first row of each row's open time
        first = np.maximum.accumulate(np.where(repeat, 0, np.arange(len(times))))
        differs = np.zeros(len(times), dtype=bool)
        for column in ordered.columns:
            values = ordered[column].to_numpy()
            differs |= values != values[first]
        if differs.any():
            at = int(np.flatnonzero(differs)[0])
            index, first_index = ordered.index[at], ordered.index[first[at]]
            raise CandleError(
                f"{label(index)}: duplicate open_time {format_time_ms(int(times[at]))} "
                f"with prices that conflict with {label(first_index)}",
                row=int(index) if isinstance(index, int | np.integer) else None,
            )
        ordered = ordered[~repeat]
    return ordered.reset_index(drop=True)


def find_gaps(open_times: np.ndarray, timeframe_ms: int) -> list[Gap]:
    """Return every run of missing bars between sorted, unique open times."""
    times = np.asarray(open_times, dtype="int64")
    if times.size < 2:
        return []
    steps = np.diff(times)
    where = np.flatnonzero(steps > timeframe_ms)
    return [
        Gap(
            start_ms=int(times[i] + timeframe_ms),
            end_ms=int(times[i + 1] - timeframe_ms),
            missing_bars=int(steps[i] // timeframe_ms - 1),
        )
        for i in where
    ]
