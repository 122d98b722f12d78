"""The one interface every market source implements, and the ingest loop that stores it.

A source yields candle pages (oldest first). `ingest` validates and writes each page in its own
short transaction and leaves the write lock free for a moment between pages, so that other
processes (the service) write in between: a bulk import never holds the lock for long. An
interrupted ingest keeps every complete page; its error says exactly which candles were stored,
and running it again continues (writes are idempotent by open time). A source whose data
arrives whole (a CSV file, the synthetic market) is checked whole first, then paged.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from agent.errors import AgoraError
from agent.market.schema import SeriesKey, format_time_ms
from agent.store import Store, WriteResult

Progress = Callable[[int, int | None], None]
"""Called with (bars done, bars expected or None) as pages arrive."""

PAGE_ROWS = 50_000
"""Candles per page of a source that holds its data whole: a page is written in ~0.2 s."""
YIELD_S = 0.1
"""The least time the write lock stays free between two pages. SQLite polls a busy lock at
least every 100 ms, so a process waiting for it gets it in this window."""


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


@dataclass(frozen=True)
class Stored:
    """What an ingest has written so far: its complete pages.

    Attributes:
        candles: candles in those pages (new, unchanged or replaced: all stored now).
        inserted: how many of them were new.
        first_ms: the first open time written (None before the first page).
        last_ms: the last open time written.
        pages: pages written.
    """

    candles: int = 0
    inserted: int = 0
    first_ms: int | None = None
    last_ms: int | None = None
    pages: int = 0

    def add(self, result: WriteResult) -> Stored:
        """Return this plus one more written page."""
        firsts = [t for t in (self.first_ms, result.first_ms) if t is not None]
        lasts = [t for t in (self.last_ms, result.last_ms) if t is not None]
        return Stored(
            candles=self.candles + result.inserted + result.unchanged + result.replaced,
            inserted=self.inserted + result.inserted,
            first_ms=min(firsts) if firsts else None,
            last_ms=max(lasts) if lasts else None,
            pages=self.pages + 1,
        )

    def describe(self) -> str:
        """Say what is stored, for an error that stopped the ingest."""
        if not self.candles or self.first_ms is None or self.last_ms is None:
            return "nothing was written"
        return (
            f"{self.candles} candle(s) from {format_time_ms(self.first_ms)} to "
            f"{format_time_ms(self.last_ms)} were written before it ({self.pages} page(s), "
            f"{self.inserted} new); running the same command again continues from there "
            "(writes are idempotent)"
        )


def with_stored(error: AgoraError, stored: Stored) -> AgoraError:
    """Return `error` (same type, attributes and cause) with what is stored added to its
    message."""
    annotated = copy.copy(error)
    annotated.args = (f"{error}; {stored.describe()}",)
    annotated.__cause__ = error.__cause__
    return annotated


def ingest(
    store: Store,
    source: CandleSource,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    replace: bool = False,
    on_page: Callable[[pd.DataFrame], None] | None = None,
    yield_s: float = YIELD_S,
) -> IngestResult:
    """Pull every page from `source` into `store`; each page is validated and written whole.

    Each page is its own transaction; the write lock stays free for at least `yield_s`
    between pages. `on_page` runs after each page is written.

    Raises:
        AgoraError: a page was refused or could not be written, or the source failed; the
            message ends with what is stored ("nothing was written", or the candles and time
            range of the pages written before the failure).
    """
    received = inserted = unchanged = replaced = 0
    stored = Stored()
    committed_at: float | None = None
    pages = iter(source.pages(start_ms, end_ms))
    while True:
        try:
            page = next(pages, None)
        except AgoraError as e:
            if not stored.candles:
                raise  # the source's own error: nothing of it was written
            raise with_stored(e, stored) from e.__cause__
        if page is None:
            break
        if committed_at is not None:
            time.sleep(max(0.0, yield_s - (time.monotonic() - committed_at)))
        try:
            result = store.write_candles(source.key, page, replace=replace)
        except AgoraError as e:
            raise with_stored(e, stored) from e.__cause__
        committed_at = time.monotonic()
        stored = stored.add(result)
        received += result.received
        inserted += result.inserted
        unchanged += result.unchanged
        replaced += result.replaced
        if on_page is not None:
            try:
                on_page(page)
            except AgoraError as e:
                raise with_stored(e, stored) from e.__cause__
    return IngestResult(source.key, received, inserted, unchanged, replaced, stored.pages)
