"""CSV import: rows per second with and without duplicate timestamps.

    .venv/bin/python benchmarks/csv_import.py                 # 1,000,000 lines per file
    .venv/bin/python benchmarks/csv_import.py --rows 200000

Two files with the same number of lines of 1m candles: `unique` (every timestamp once) and
`duplicates` (a third of the lines repeat an earlier line exactly: identical duplicates, which
the import drops). Each goes through the stages of `agora data import` into a fresh store, each
stage timed: `parse` (`read_csv_candles`), `validate` (the quality checks, the duplicate
resolution and the timeframe check), `write` (the conflict check and the paged writes of
`ingest`, pauses between pages included).

Peers, measured in the same run: `pandas.read_csv` of the same file (a floor for parsing, with
none of the import's checks or line-numbered errors), and the previous duplicate resolution
(one group at a time, one row comparison per duplicate) on the first `--peer-rows` lines of the
duplicates file, extrapolated to the whole file.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Hashable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from agent.market.csv_source import check_spacing, read_csv_candles
from agent.market.quality import validate_candles
from agent.market.schema import SeriesKey, format_time_ms, timeframe_ms
from agent.market.sources import PAGE_ROWS, ingest
from agent.store import Store

MINUTE = 60_000
FIRST_MS = 1_600_000_020_000


def write_file(path: Path, lines: int, duplicate_share: float, seed: int = 1) -> None:
    """Write `lines` lines of 1m candles, `duplicate_share` of them repeating an earlier line."""
    rng = np.random.default_rng(seed)
    unique = lines - int(lines * duplicate_share)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, unique)))
    opening = np.r_[close[0], close[:-1]]
    frame = pd.DataFrame(
        {
            "timestamp": FIRST_MS + MINUTE * np.arange(unique, dtype=np.int64),
            "open": opening,
            "high": np.maximum(opening, close) * 1.001,
            "low": np.minimum(opening, close) * 0.999,
            "close": close,
            "volume": rng.uniform(1, 10, unique),
        }
    )
    if lines > unique:
        repeats = np.sort(rng.choice(unique, lines - unique, replace=False))
        frame = pd.concat([frame, frame.iloc[repeats]]).sort_values("timestamp", kind="stable")
    frame.to_csv(path, index=False, float_format="%.8g")


class FrameSource:
    """Validated candles as a `CandleSource`, paged like `CsvSource`."""

    def __init__(self, key: SeriesKey, candles: pd.DataFrame) -> None:
        self._key, self._candles = key, candles

    @property
    def key(self) -> SeriesKey:
        return self._key

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        for at in range(0, len(self._candles), PAGE_ROWS):
            yield self._candles.iloc[at : at + PAGE_ROWS].reset_index(drop=True)


def import_stages(path: Path, database: Path) -> tuple[int, dict[str, float]]:
    """Run the import's stages on `path`; return the bars stored and the seconds per stage."""
    key = SeriesKey("csv", "BENCH/USD", "1m")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    frame = read_csv_candles(path)
    seconds["parse"] = time.perf_counter() - started

    def label(index: Hashable) -> str:
        return f"{path}: line {index}"

    started = time.perf_counter()
    clean = validate_candles(frame, timeframe_ms(key.timeframe), row_label=label)
    check_spacing(path, clean["open_time"].to_numpy(dtype="int64"), key)
    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    with Store(database) as store:
        store.refuse_conflicts(key, clean, page_rows=PAGE_ROWS)
        result = ingest(store, FrameSource(key, clean))
    seconds["write"] = time.perf_counter() - started
    return result.inserted, seconds


def row_at_a_time(clean: pd.DataFrame) -> pd.DataFrame:
    """The previous duplicate resolution: a groupby, then one comparison per duplicate row."""
    ordered = clean.sort_values("open_time", kind="stable")
    duplicated = ordered["open_time"].duplicated(keep=False).to_numpy()
    if duplicated.any():
        for open_time, group in ordered[duplicated].groupby("open_time", sort=True):
            first = group.iloc[0]
            for _, row in group.iloc[1:].iterrows():
                if not row.equals(first):
                    raise ValueError(f"conflict at {format_time_ms(int(open_time))}")
        ordered = ordered[~ordered["open_time"].duplicated(keep="first").to_numpy()]
    return ordered.reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="lines per file")
    parser.add_argument(
        "--peer-rows", type=int, default=100_000, help="lines for the previous resolution"
    )
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"sqlite {sqlite3.sqlite_version}; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; {args.rows:,} lines of 1m candles per file, "
        f"pages of {PAGE_ROWS:,}"
    )
    rows: list[tuple[str, int, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, share in (("unique", 0.0), ("duplicates", 1 / 3)):
            path = Path(tmp) / f"{name}.csv"
            write_file(path, args.rows, share)
            bars, seconds = import_stages(path, Path(tmp) / f"{name}.db")
            started = time.perf_counter()
            pd.read_csv(path)
            floor = time.perf_counter() - started
            rows.append((name, args.rows, bars, {**seconds, "pandas.read_csv": floor}))
        sample = read_csv_candles(Path(tmp) / "duplicates.csv").iloc[: args.peer_rows]
        frame = validate_candles(sample.iloc[:0], MINUTE)  # warm-up
        started = time.perf_counter()
        frame = validate_candles(sample, MINUTE)
        vectorised = time.perf_counter() - started
        started = time.perf_counter()
        row_at_a_time(sample)
        previous = time.perf_counter() - started

    print(
        f"{'file':<11} {'lines':>10} {'bars':>10} {'parse s':>8} {'validate s':>10} "
        f"{'write s':>8} {'total s':>8} {'lines/s':>9} {'read_csv s':>10}"
    )
    for name, lines, bars, s in rows:
        total = s["parse"] + s["validate"] + s["write"]
        print(
            f"{name:<11} {lines:>10,} {bars:>10,} {s['parse']:>8.2f} {s['validate']:>10.2f} "
            f"{s['write']:>8.2f} {total:>8.2f} {lines / total:>9,.0f} "
            f"{s['pandas.read_csv']:>10.2f}"
        )
    totals = [s["parse"] + s["validate"] + s["write"] for _, _, _, s in rows]
    print(f"duplicates / unique, total time: {totals[1] / totals[0]:.2f}")
    scale = args.rows / max(len(sample), 1)
    print(
        f"duplicate resolution on {len(sample):,} lines of the duplicates file: vectorised "
        f"{vectorised:.3f} s (validation included), previous row-at-a-time {previous:.2f} s "
        f"(x{previous / max(vectorised, 1e-9):,.0f}); extrapolated to {args.rows:,} lines: "
        f"{vectorised * scale:.1f} s vs {previous * scale:.0f} s ({len(frame):,} bars kept)"
    )


if __name__ == "__main__":
    main()
