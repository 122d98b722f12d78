"""Import OHLCV candles from CSV files in the common layouts.

Accepted: a header row with column names in any case (`timestamp`/`time`/`date`/`open_time`/…,
`open`, `high`, `low`, `close`, `volume`; other columns are ignored), or no header with the
columns in that order (exchange kline dumps). Times are epoch seconds, milliseconds or
microseconds, or ISO 8601 with or without a time zone (no zone means UTC). The whole file is
checked before anything is stored: any malformed line refuses the file with its line number,
and bars further apart than the declared timeframe refuse it as a usage error.
"""

from __future__ import annotations

import csv
from collections.abc import Hashable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from agent.errors import CsvFormatError, UsageError
from agent.market.quality import validate_candles
from agent.market.schema import CANDLE_COLUMNS, SeriesKey, format_timeframe, timeframe_ms
from agent.market.sources import PAGE_ROWS, IngestResult, ingest
from agent.store import Store

TIME_NAMES = ("open_time", "timestamp", "time", "date", "datetime", "ts", "unix", "open time")
COLUMN_ALIASES = {
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v", "volume_base", "base_volume"),
}


def _header_map(header: list[str], path: Path) -> dict[str, int]:
    lowered = [name.strip().lower() for name in header]
    found: dict[str, int] = {}
    for position, name in enumerate(lowered):
        if name in TIME_NAMES and "open_time" not in found:
            found["open_time"] = position
    for column, aliases in COLUMN_ALIASES.items():
        for position, name in enumerate(lowered):
            if name in aliases:
                found[column] = position
                break
    missing = [c for c in CANDLE_COLUMNS if c not in found]
    if missing:
        raise CsvFormatError(
            f"{path}: line 1: header {header!r} lacks column(s) {', '.join(missing)} "
            f"(time may be named {', '.join(TIME_NAMES)})",
            line=1,
        )
    return found


def _looks_numeric(cells: list[str]) -> bool:
    try:
        [float(cell) for cell in cells[:6]]
    except ValueError:
        return False
    return True


def _parse_times(raw: list[str], lines: list[int], path: Path) -> np.ndarray:
    """Turn the time column into UTC milliseconds, choosing the unit for the whole file."""
    numeric = pd.to_numeric(pd.Series(raw), errors="coerce")
    if numeric.notna().all():
        values = numeric.to_numpy(dtype="float64")
        magnitude = np.nanmax(np.abs(values)) if values.size else 0.0
        scale = 1_000.0 if magnitude < 1e11 else 1.0 if magnitude < 1e14 else 1e-3
        return np.round(values * scale).astype("int64")
    if numeric.notna().any():
        at = int(np.flatnonzero(numeric.notna().to_numpy())[0])
        raise CsvFormatError(
            f"{path}: line {lines[at]}: time {raw[at]!r} is a number while other lines use "
            "dates; use one format for the whole file",
            line=lines[at],
        )
    stamps = pd.to_datetime(pd.Series(raw), errors="coerce", utc=True, format="ISO8601")
    bad = stamps.isna().to_numpy()
    if bad.any():
        at = int(np.flatnonzero(bad)[0])
        raise CsvFormatError(
            f"{path}: line {lines[at]}: cannot parse the time {raw[at]!r} "
            "(expected ISO 8601, or epoch seconds / milliseconds)",
            line=lines[at],
        )
    return stamps.dt.as_unit("ms").astype("int64").to_numpy(dtype="int64")


def read_csv_candles(path: Path | str) -> pd.DataFrame:
    """Parse a CSV file into a candle frame indexed by file line number (1-based)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as e:
        raise CsvFormatError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise CsvFormatError(f"{path}: cannot read the file: {e}") from e
    rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), start=1) if row]
    if not rows:
        raise CsvFormatError(f"{path}: the file is empty", line=1)
    first_line, first = rows[0]
    if _looks_numeric(first):
        if len(first) < len(CANDLE_COLUMNS):
            raise CsvFormatError(
                f"{path}: line {first_line}: {len(first)} columns; a file without a header "
                "needs at least time, open, high, low, close, volume",
                line=first_line,
            )
        mapping = {column: i for i, column in enumerate(CANDLE_COLUMNS)}
        body = rows
    else:
        mapping = _header_map(first, path)
        body = rows[1:]
    width = len(first)
    for line, row in body:
        if len(row) != width:
            raise CsvFormatError(
                f"{path}: line {line}: {len(row)} columns where the file has {width}",
                line=line,
            )
    lines = [line for line, _ in body]
    columns = {name: [row[i].strip() for _, row in body] for name, i in mapping.items()}
    frame = pd.DataFrame(index=pd.Index(lines, name="line"))
    frame["open_time"] = _parse_times(columns["open_time"], lines, path) if body else []
    for name in CANDLE_COLUMNS[1:]:
        values = pd.to_numeric(pd.Series(columns[name], index=frame.index), errors="coerce")
        bad = values.isna()
        if bad.any():  # a spelled-out NaN or infinity is a number (refused later, by value)
            bad &= ~pd.Series(columns[name], index=frame.index).str.lower().isin(
                ["nan", "inf", "-inf", "infinity"]
            )
        if bad.any():
            line = int(bad[bad].index[0])
            value = columns[name][lines.index(line)]
            raise CsvFormatError(
                f"{path}: line {line}: {name} {value!r} is not a number", line=line
            )
        frame[name] = values.astype("float64")
    return frame


class CsvSource:
    """A CSV file as a candle source: parsed and validated whole, then yielded in pages."""

    def __init__(self, path: Path | str, symbol: str, timeframe: str, source: str = "csv") -> None:
        self.path = Path(path)
        self._key = SeriesKey(source, symbol, timeframe)
        self._candles: pd.DataFrame | None = None

    @property
    def key(self) -> SeriesKey:
        return self._key

    def candles(self) -> pd.DataFrame:
        """Return the whole file's candles, validated, sorted and de-duplicated (read once).

        Raises:
            CsvFormatError, CandleError: a line cannot be parsed or a candle is refused.
            UsageError: the file's bars are further apart than the declared timeframe.
        """
        if self._candles is None:
            frame = read_csv_candles(self.path)

            def label(index: Hashable) -> str:
                return f"{self.path}: line {index}"

            tf_ms = timeframe_ms(self.key.timeframe)
            clean = validate_candles(frame, tf_ms, row_label=label)
            check_spacing(self.path, clean["open_time"].to_numpy(dtype="int64"), self.key)
            self._candles = clean
        return self._candles

    def pages(
        self, start_ms: int | None = None, end_ms: int | None = None
    ) -> Iterator[pd.DataFrame]:
        clean = self.candles()
        if start_ms is not None:
            clean = clean[clean["open_time"] >= start_ms]
        if end_ms is not None:
            clean = clean[clean["open_time"] <= end_ms]
        for at in range(0, len(clean), PAGE_ROWS):
            yield clean.iloc[at : at + PAGE_ROWS].reset_index(drop=True)


def check_spacing(path: Path, open_times: np.ndarray, key: SeriesKey) -> None:
    """Refuse a file whose bars are further apart than its declared timeframe.

    Gaps are allowed, so the spacing found is the smallest one between consecutive
    timestamps: an hourly file declared as 5m has no two bars 5 minutes apart. (Bars closer
    than the timeframe are already refused by the grid check.)

    Args:
        path: the file, for the message.
        open_times: its sorted, unique open times.
        key: the series it is imported as (its timeframe is the declared one).

    Raises:
        UsageError: the smallest spacing is larger than the declared timeframe.
    """
    if open_times.size < 2:
        return
    declared_ms = timeframe_ms(key.timeframe)
    spacing_ms = int(np.diff(open_times).min())
    if spacing_ms > declared_ms:
        raise UsageError(
            f"{path}: --timeframe {key.timeframe} does not match the file: its bars are "
            f"{format_timeframe(spacing_ms)} apart (the smallest spacing between its "
            f"timestamps), not {key.timeframe}; import it with "
            f"--timeframe {format_timeframe(spacing_ms)}"
        )


def import_csv(
    store: Store,
    path: Path | str,
    symbol: str,
    timeframe: str,
    *,
    source: str = "csv",
    replace: bool = False,
) -> IngestResult:
    """Import a CSV file into the store.

    The whole file is parsed, validated and compared with the stored candles before anything
    is written: a bad line, a timeframe that does not match the file or a candle that
    conflicts with a stored one writes nothing. The candles are then written in pages of
    `PAGE_ROWS`, each its own short transaction (see `ingest`), so a running service keeps
    writing; a failure while writing says which candles are stored, and importing the file
    again continues.
    """
    csv_source = CsvSource(path, symbol, timeframe, source)
    candles = csv_source.candles()
    if not replace:
        store.refuse_conflicts(csv_source.key, candles, page_rows=PAGE_ROWS)
    return ingest(store, csv_source, replace=replace)
