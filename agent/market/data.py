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


def show(
    store: Store,
    key: SeriesKey,
    *,
    start_ms: int | None = None,
    end_ms: int | None = None,
    limit: int | None = None,
) -> pd.DataFrame:
    """Return stored candles of one series (the last `limit` of the range, if given)."""
    frame = store.read_candles(key, start_ms=start_ms, end_ms=end_ms)
    if frame.empty and store.last_open_time(key) is None:
        known = ", ".join(str(s.key) for s in store.list_series()) or "none"
        raise UsageError(f"no candles stored for {key} (stored series: {known})")
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
