"""The one interface every market source implements, and the ingest loop that stores it.

A source yields candle pages (oldest first). `ingest` validates and writes each page in its own
transaction, so an interrupted download keeps every complete page and resumes after it. A
source whose data must arrive whole (a CSV file) yields a single page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from agent.market.schema import SeriesKey
from agent.store import Store

Progress = Callable[[int, int | None], None]
"""Called with (bars done, bars expected or None) as pages arrive."""


class CandleSource(Protocol):
    """A source of candles for one series."""

    @property
    def key(self) -> SeriesKey: ...

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        """Yield candle frames, oldest first, for open times in [start_ms, end_ms]."""
        ...


@dataclass(frozen=True)
class IngestResult:
    key: SeriesKey
    received: int
    inserted: int
    unchanged: int
    replaced: int
    pages: int


def ingest(
    store: Store,
    source: CandleSource,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    replace: bool = False,
    on_page: Callable[[pd.DataFrame], None] | None = None,
) -> IngestResult:
    """Pull every page from `source` into `store`; each page is validated and written whole."""
    received = inserted = unchanged = replaced = pages = 0
    for page in source.pages(start_ms, end_ms):
        result = store.write_candles(source.key, page, replace=replace)
        received += result.received
        inserted += result.inserted
        unchanged += result.unchanged
        replaced += result.replaced
        pages += 1
        if on_page is not None:
            on_page(page)
    return IngestResult(source.key, received, inserted, unchanged, replaced, pages)
