"""The library behind `agora data …`: one function per command, same names and arguments.

`synth`, `import_csv` and `download` live with their sources; this module adds the read side
(`list_series`, `show`, `check`) and picks the series a command means by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from agent.config import Settings
from agent.errors import CandleError, UsageError
from agent.market.quality import Gap, find_gaps, validate_candles
from agent.market.schema import SeriesKey, format_time_ms, timeframe_ms
from agent.store import SeriesSummary, Store


def default_key(settings: Settings) -> SeriesKey:
    """Return the series the configuration trades: its source, symbol and timeframe."""
    market = settings.market
    source = market.exchange.id if market.source == "exchange" else market.source
    return SeriesKey(source, market.symbol, market.timeframe)


def resolve_key(
    settings: Settings,
    source: str | None = None,
    symbol: str | None = None,
    timeframe: str | None = None,
) -> SeriesKey:
    """Fill whatever the user left out from the configured series."""
    base = default_key(settings)
    return SeriesKey(source or base.source, symbol or base.symbol, timeframe or base.timeframe)


def list_series(store: Store) -> list[SeriesSummary]:
    """Return every stored candle series with its bar count and time range."""
    return store.list_series()


def check_time_range(
    start_ms: int | None,
    end_ms: int | None,
    *,
    first_ms: int,
    last_ms: int,
    series: str,
    names: tuple[str, str] = ("start", "end"),
) -> None:
    """Refuse a time range that is reversed or misses the data, naming the data's range.

    Args:
        start_ms: first time asked for, if any.
        end_ms: last time asked for, if any.
        first_ms: open time of the first candle there is.
        last_ms: open time of the last candle there is.
        series: what the candles are, for the message.
        names: what the user called the start and the end (`--start`, `data.start`).

    Raises:
        UsageError: the start is after the end, the end before the first candle or the start
            after the last one.
    """
    held = f"{series} holds candles from {format_time_ms(first_ms)} to {format_time_ms(last_ms)}"
    start_name, end_name = names
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise UsageError(
            f"{start_name} {format_time_ms(start_ms)} is after {end_name} "
            f"{format_time_ms(end_ms)}; {held}"
        )
    if end_ms is not None and end_ms < first_ms:
        raise UsageError(f"{end_name} {format_time_ms(end_ms)} is before the data: {held}")
    if start_ms is not None and start_ms > last_ms:
        raise UsageError(f"{start_name} {format_time_ms(start_ms)} is after the data: {held}")


def show(
    store: Store,
    key: SeriesKey,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int | None = None,
    names: tuple[str, str] = ("start", "end"),
) -> pd.DataFrame:
    """Return stored candles of one series (the last `limit` of the range, if given).

    Raises:
        UsageError: no such series, or the range is reversed or misses its candles
            (`check_time_range`; `names` are what the caller calls the range's ends).
    """
    last_ms = store.last_open_time(key)
    if last_ms is None:
        known = ", ".join(str(s.key) for s in store.list_series()) or "none"
        raise UsageError(f"no candles stored for {key} (stored series: {known})")
    first_ms = store.first_open_time(key)
    assert first_ms is not None
    check_time_range(
        start_ms, end_ms, first_ms=first_ms, last_ms=last_ms, series=str(key), names=names
    )
    frame = store.read_candles(key, start_ms=start_ms, end_ms=end_ms)
    return frame.tail(limit).reset_index(drop=True) if limit else frame


@dataclass(frozen=True)
class QualityReport:
    """The quality of one stored series: clean when it has no gaps and no bad candles."""

    key: SeriesKey
    bars: int
    first_ms: int | None
    last_ms: int | None
    gaps: list[Gap] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.gaps and not self.problems

    @property
    def missing_bars(self) -> int:
        return sum(gap.missing_bars for gap in self.gaps)

    def as_dict(self) -> dict[str, object]:
        return {
            "series": str(self.key),
            "bars": self.bars,
            "first": format_time_ms(self.first_ms) if self.first_ms is not None else None,
            "last": format_time_ms(self.last_ms) if self.last_ms is not None else None,
            "clean": self.clean,
            "missing_bars": self.missing_bars,
            "gaps": [
                {
                    "from": format_time_ms(g.start_ms),
                    "to": format_time_ms(g.end_ms),
                    "missing_bars": g.missing_bars,
                }
                for g in self.gaps
            ],
            "problems": self.problems,
        }


def check(store: Store, key: SeriesKey) -> QualityReport:
    """Re-check a stored series: candle validity (in case the file was edited) and gaps."""
    frame = store.read_candles(key)
    if frame.empty:
        return QualityReport(key, 0, None, None, problems=[f"no candles stored for {key}"])
    problems = []
    try:
        validate_candles(frame, timeframe_ms(key.timeframe))
    except CandleError as e:
        problems.append(str(e))
    times = frame["open_time"].to_numpy()
    return QualityReport(
        key=key,
        bars=len(frame),
        first_ms=int(times[0]),
        last_ms=int(times[-1]),
        gaps=find_gaps(times, timeframe_ms(key.timeframe)),
        problems=problems,
    )


def check_all(store: Store) -> list[QualityReport]:
    """Check every stored series."""
    return [check(store, summary.key) for summary in store.list_series()]
