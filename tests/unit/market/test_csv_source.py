from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agent.errors import CsvFormatError, DataError, UsageError
from agent.market.csv_source import import_csv, read_csv_candles
from agent.market.schema import SeriesKey, parse_time_ms
from agent.market.sources import PAGE_ROWS
from agent.store import Store

CORPUS = Path(__file__).parents[2] / "data" / "csv_corpus"

# file -> (the line that must be named, a word the message must contain)
BAD_FILES = {
    "nan_price.csv": (3, "low is nan"),
    "duplicate_conflicting.csv": (4, "duplicate open_time"),
    "high_below_low.csv": (3, "high 9.0 < low 11.0"),
    "negative_volume.csv": (4, "volume is -5.0"),
    "unparseable_date.csv": (3, "cannot parse the time"),
    "wrong_column_count.csv": (3, "5 columns where the file has 6"),
    "not_a_number.csv": (3, "close 'abc' is not a number"),
    "infinite_price.csv": (3, "high is inf"),
    "zero_price.csv": (3, "prices must be > 0"),
}


def snapshot(store: Store) -> list[tuple[object, ...]]:
    return list(store.db.execute("SELECT * FROM candles ORDER BY 1, 2, 3, 4").fetchall())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    with Store(tmp_path / "agora.db") as store:
        seed = pd.DataFrame(
            {
                "open_time": [parse_time_ms("2023-12-31T23:00:00Z")],
                "open": [9.0],
                "high": [10.0],
                "low": [8.5],
                "close": [10.0],
                "volume": [5.0],
            }
        )
        store.write_candles(SeriesKey("csv", "BTC/USDT", "1h"), seed)
        yield store


def test_error_corpus_covers_every_case_named_in_the_issue() -> None:
    assert sorted(p.name for p in CORPUS.glob("*.csv")) == sorted(BAD_FILES)


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_csv_is_refused_naming_the_line_and_store_is_unchanged(store: Store, name: str) -> None:
    line, words = BAD_FILES[name]
    before = snapshot(store)
    with pytest.raises(DataError) as info:
        import_csv(store, CORPUS / name, "BTC/USDT", "1h")
    message = str(info.value)
    assert f"line {line}" in message
    assert words in message
    assert name in message
    assert snapshot(store) == before


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candles.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("header", "first_time", "second_time"),
    [
        ("Timestamp,Open,High,Low,Close,Volume", "1704067200", "1704070800"),
        ("OPEN_TIME,OPEN,HIGH,LOW,CLOSE,VOLUME", "1704067200000", "1704070800000"),
        ("date,open,high,low,close,volume", "2024-01-01T00:00:00Z", "2024-01-01T01:00:00Z"),
        ("Date,Open,High,Low,Close,Volume", "2024-01-01 00:00:00", "2024-01-01 01:00:00"),
        (
            "time,open,high,low,close,volume",
            "2024-01-01T02:00:00+02:00",
            "2024-01-01T03:00:00+02:00",
        ),
    ],
)
def test_common_layouts_parse_to_the_same_utc_times(
    tmp_path: Path, header: str, first_time: str, second_time: str
) -> None:
    path = write(
        tmp_path,
        f"{header}\n{first_time},10,11,9,10.5,100\n{second_time},10.5,11,10,10.8,120\n",
    )
    frame = read_csv_candles(path)
    assert frame["open_time"].tolist() == [1704067200000, 1704070800000]
    assert frame["close"].tolist() == [10.5, 10.8]


def test_headerless_kline_dump_with_extra_columns_is_read_in_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "1704067200000,10,11,9,10.5,100,1704070799999,1000,5,50,500,0\n"
        "1704070800000,10.5,11,10,10.8,120,1704074399999,1200,6,60,600,0\n",
    )
    frame = read_csv_candles(path)
    assert frame["volume"].tolist() == [100.0, 120.0]
    assert frame.index.tolist() == [1, 2]


def test_extra_named_columns_are_ignored_and_unsorted_rows_are_sorted(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2024-01-01T01:00:00Z,10.5,11,10,10.8,10.8,120\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,10.5,100\n"
        "2024-01-01T00:00:00Z,10,11,9,10.5,10.5,100\n",
    )
    with Store(tmp_path / "a.db") as store:
        result = import_csv(store, path, "X/Y", "1h")
        stored = store.read_candles(SeriesKey("csv", "X/Y", "1h"))
    assert result.inserted == 2
    assert stored["close"].tolist() == [10.5, 10.8]


def test_header_without_a_time_column_names_what_is_missing(tmp_path: Path) -> None:
    path = write(tmp_path, "open,high,low,close,volume\n10,11,9,10.5,100\n")
    with pytest.raises(CsvFormatError, match=r"line 1: .*lacks column\(s\) open_time"):
        read_csv_candles(path)


def test_mixed_numeric_and_iso_times_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10.5,1\n1704070800,10,11,9,10,1\n",
    )
    with pytest.raises(CsvFormatError, match="line 3"):
        read_csv_candles(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CsvFormatError, match="no such file"):
        read_csv_candles(tmp_path / "nope.csv")


def test_time_off_the_timeframe_grid_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "time,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10.5,1\n"
        "2024-01-01T00:30:00Z,10,11,9,10,1\n",
    )
    with Store(tmp_path / "a.db") as store, pytest.raises(DataError, match=r"line 3: .*grid"):
        import_csv(store, path, "X/Y", "1h")


def hourly_file(tmp_path: Path, hours: list[int]) -> Path:
    """A file with bars at 2024-01-01T00:00Z plus each of `hours` hours."""
    lines = [f"{1704067200 + 3600 * h},10,11,9,10.5,1" for h in hours]
    return write(tmp_path, "time,open,high,low,close,volume\n" + "\n".join(lines) + "\n")


def test_an_hourly_file_declared_as_5m_is_refused_naming_the_file_and_both_spacings(
    tmp_path: Path,
) -> None:
    path = hourly_file(tmp_path, [0, 1, 2, 5, 6])  # with a gap: the smallest spacing counts
    with Store(tmp_path / "a.db") as store:
        with pytest.raises(UsageError) as info:
            import_csv(store, path, "X/Y", "5m")
        assert store.list_series() == []
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"{path}: --timeframe 5m does not match the file: its bars are 1h apart (the smallest "
        "spacing between its timestamps), not 5m; import it with --timeframe 1h"
    )


def test_a_file_with_gaps_is_accepted_at_its_own_timeframe(tmp_path: Path) -> None:
    path = hourly_file(tmp_path, [0, 1, 5, 9, 10])
    with Store(tmp_path / "a.db") as store:
        assert import_csv(store, path, "X/Y", "1h").inserted == 5


def test_a_multi_page_file_that_conflicts_at_its_end_writes_nothing(tmp_path: Path) -> None:
    bars = PAGE_ROWS + 500
    hours = 1704067200 + 3600 * np.arange(bars)
    text = "\n".join(f"{t},10,11,9,10.5,1" for t in hours)
    path = write(tmp_path, "time,open,high,low,close,volume\n" + text + "\n")
    key = SeriesKey("csv", "X/Y", "1h")
    with Store(tmp_path / "a.db") as store:
        stored = pd.DataFrame(
            [[int(hours[-1]) * 1000, 10.0, 12.0, 9.0, 10.5, 1.0]],
            columns=["open_time", "open", "high", "low", "close", "volume"],
        )
        store.write_candles(key, stored)
        with pytest.raises(DataError, match=r"1 conflicting candle\(s\).*; nothing was written$"):
            import_csv(store, path, "X/Y", "1h")
        assert len(store.read_candles(key)) == 1
        result = import_csv(store, path, "X/Y", "1h", replace=True)
        assert (result.inserted, result.replaced, result.pages) == (bars - 1, 1, 2)
