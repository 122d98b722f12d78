"""`ingest`: pages written one short transaction each, and errors that say what is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from agent.config import SyntheticSettings
from agent.errors import CandleError
from agent.market.schema import SeriesKey, format_time_ms
from agent.market.sources import ingest
from agent.market.synthetic import synth
from agent.store import Store

HOUR = 3_600_000
KEY = SeriesKey("test", "PAGE/USD", "1h")


def candles(start: int, n: int, close: float = 10.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "open_time": [(start + i) * HOUR for i in range(n)],
            "open": [close] * n,
            "high": [close + 1] * n,
            "low": [close - 1] * n,
            "close": [close] * n,
            "volume": [1.0] * n,
        }
    )


class PagedSource:
    """A candle source of fixed pages (a `CandleSource`)."""

    def __init__(self, pages: list[pd.DataFrame]) -> None:
        self._pages = pages

    @property
    def key(self) -> SeriesKey:
        return KEY

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        yield from self._pages


def test_a_bad_candle_in_the_second_page_reports_exactly_the_first_page_as_written(
    tmp_path: Path,
) -> None:
    bad = candles(100, 100)
    bad.loc[30, "high"] = 1.0  # below its low
    pages = [candles(0, 100), bad, candles(200, 100)]
    with Store(tmp_path / "a.db") as store:
        with pytest.raises(CandleError) as info:
            ingest(store, PagedSource(pages))
        stored = store.read_candles(KEY)
        message = str(info.value)
        assert message.startswith("row 30: high 1.0 < low 9.0; ")
        assert message.endswith(
            f"; 100 candle(s) from {format_time_ms(0)} to {format_time_ms(99 * HOUR)} were "
            "written before it (1 page(s), 100 new); running the same command again continues "
            "from there (writes are idempotent)"
        )
        assert stored["open_time"].tolist() == [i * HOUR for i in range(100)]

        pages[1] = candles(100, 100)  # fixed: running again continues
        again = ingest(store, PagedSource(pages))
        assert (again.inserted, again.unchanged, again.pages) == (200, 100, 3)
        assert len(store.read_candles(KEY)) == 300


def test_a_failure_in_the_first_page_says_nothing_was_written(tmp_path: Path) -> None:
    with Store(tmp_path / "a.db") as store:
        store.write_candles(KEY, candles(50, 1, close=20.0))
        with pytest.raises(CandleError) as info:
            ingest(store, PagedSource([candles(0, 100), candles(100, 100)]))
        assert str(info.value).endswith(
            "differs from the stored one (1 conflicting candle(s); use replace to overwrite); "
            "nothing was written"
        )
        assert len(store.read_candles(KEY)) == 1


def test_synth_that_conflicts_in_a_later_page_writes_nothing(tmp_path: Path) -> None:
    settings = SyntheticSettings(bars=120_000, seed=3)
    with Store(tmp_path / "a.db") as store:
        first = synth(store, SyntheticSettings(bars=200, seed=3), "SYN/USD", "1h")
        key = first.key
        late = store.read_candles(key).iloc[[-1]].copy()
        late["open_time"] += 110_000 * HOUR  # in the third page of the longer run
        store.write_candles(key, late)
        before = store.read_candles(key)
        with pytest.raises(CandleError, match=r"1 conflicting candle\(s\).*; nothing was written$"):
            synth(store, settings, "SYN/USD", "1h")
        pd.testing.assert_frame_equal(store.read_candles(key), before)
