"""Where the service's candles come from: a replay of stored candles, or an exchange, live.

Both feeds implement `MarketFeed`. `history` returns the bars before the first decision;
`poll(after_ms, limit)` returns the closed candles after `after_ms` that are available now,
unvalidated (the runtime validates and stores each one, refusing a bad one alone). A feed that
cannot deliver says why in `FeedBatch.error` instead of raising, so a failing exchange costs a
bar, not the service.

- `ReplayFeed`: the configured market's stored candles (the synthetic market is generated into
  the store when missing), revealed at `replay_speed` bars per second from the moment the
  service (re)starts; 0 reveals everything at once. Replay time is virtual, so after a restart
  the replay continues with the next undecided bar and no bar is ever late.
- `ExchangeFeed`: closed candles through ccxt (`agent.market.exchange.ExchangeSource`, which
  retries network errors, timeouts and rate limits with exponential backoff). A bar the
  exchange could not deliver is tried again at the next poll; the runtime decides it only while
  it is in time (`late_reason`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from agent.config import Settings
from agent.errors import ConfigError, DataError, ExchangeError, SourceError
from agent.market.schema import SeriesKey, empty_candles, format_time_ms, timeframe_ms
from agent.store import Store

Clock = Callable[[], float]
"""Seconds on a monotonic clock."""


@dataclass(frozen=True)
class FeedBatch:
    """What one poll brought.

    Attributes:
        candles: closed candles after the polled time, oldest first (not yet validated).
        error: why the feed could not deliver (after its retries), or None.
        exhausted: a replay has no candles left.
    """

    candles: pd.DataFrame = field(default_factory=empty_candles)
    error: str | None = None
    exhausted: bool = False


class MarketFeed(Protocol):
    """A source of closed candles for the one market the service trades."""

    kind: str
    """'replay' or 'exchange'."""
    key: SeriesKey
    """The series the service stores the candles under (and decides on)."""
    timeframe_ms: int

    def history(self, bars: int) -> pd.DataFrame:
        """Return up to `bars` closed candles before the first decision, oldest first."""
        ...

    def poll(self, after_ms: int, limit: int) -> FeedBatch:
        """Return at most `limit` closed candles with open times after `after_ms`."""
        ...

    def lag_bars(self, after_ms: int) -> int:
        """Return how many closed bars after `after_ms` are available or due."""
        ...

    def late_reason(self, open_ms: int) -> str | None:
        """Return why the bar opening at `open_ms` is too late to decide, or None."""
        ...

    def hidden(self, open_times: np.ndarray) -> dict[str, np.ndarray]:
        """Return the hidden series (the synthetic market's planted one) at these bars."""
        ...

    def restart_clock(self, after_ms: int) -> None:
        """Start the feed's clock now, the last bar handled opening at `after_ms`."""
        ...


# --- replay -------------------------------------------------------------------------------------
def replay_key(source: SeriesKey) -> SeriesKey:
    """Return the series a replay of `source` is stored under as it is revealed.

    A separate series, so that training, the promotion gate and reward epochs see exactly the
    bars revealed so far, never the rest of the stored source.
    """
    return SeriesKey(f"replay-{source.source}", source.symbol, source.timeframe)


class ReplayFeed:
    """Candles of a stored series, revealed at a fixed pace from `start_bar` on.

    Args:
        candles: the whole source series, oldest first.
        source: the stored series replayed.
        start_bar: index of the first bar decided; the bars before it are history.
        speed: bars revealed per second (0: all at once).
        hidden: hidden series of the source, aligned with `candles`.
        clock: a monotonic clock in seconds.
    """

    kind = "replay"

    def __init__(
        self,
        candles: pd.DataFrame,
        source: SeriesKey,
        *,
        start_bar: int,
        speed: float,
        hidden: Mapping[str, np.ndarray] | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if not 1 <= start_bar < len(candles):
            raise ConfigError(
                f"service.start_bar = {start_bar}: the replayed series {source} has "
                f"{len(candles)} bars; expected 1 <= start_bar < {len(candles)}"
            )
        if speed < 0 or not math.isfinite(speed):
            raise ConfigError(f"service.replay_speed = {speed}: expected a number >= 0")
        self.source = source
        self.key = replay_key(source)
        self.timeframe_ms = timeframe_ms(source.timeframe)
        self.start_bar = start_bar
        self.speed = speed
        self._candles = candles.reset_index(drop=True)
        self._times = self._candles["open_time"].to_numpy(dtype="int64")
        self._hidden = {k: np.asarray(v, dtype="float64") for k, v in (hidden or {}).items()}
        self._clock = clock
        self._anchor_s = clock()
        self._anchor_index = start_bar - 1

    @property
    def bars(self) -> int:
        """Bars in the replayed series."""
        return len(self._times)

    def restart_clock(self, after_ms: int) -> None:
        self._anchor_s = self._clock()
        self._anchor_index = self._index_after(after_ms)

    def history(self, bars: int) -> pd.DataFrame:
        start = max(0, self.start_bar - bars)
        return self._candles.iloc[start : self.start_bar].reset_index(drop=True)

    def _revealed(self) -> int:
        """Return the index one past the newest revealed bar.

        The bar after the one handled last is revealed at once when the clock (re)starts, then
        one more every 1 / speed seconds.
        """
        if self.speed == 0:
            return self.bars
        elapsed = max(0.0, self._clock() - self._anchor_s)
        return min(self.bars, self._anchor_index + 2 + int(elapsed * self.speed))

    def _index_after(self, after_ms: int) -> int:
        """Return the index of the last bar at or before `after_ms` (-1 if none)."""
        return int(np.searchsorted(self._times, after_ms, side="right")) - 1

    def poll(self, after_ms: int, limit: int) -> FeedBatch:
        after = self._index_after(after_ms)
        end = min(self._revealed(), after + 1 + max(0, limit))
        rows = self._candles.iloc[after + 1 : end].reset_index(drop=True)
        return FeedBatch(rows, exhausted=after + 1 >= self.bars)

    def lag_bars(self, after_ms: int) -> int:
        after = self._index_after(after_ms)
        return max(0, self._revealed() - after - 1)

    def late_reason(self, open_ms: int) -> str | None:
        return None  # replay time waits for the service: no bar is ever late

    def hidden(self, open_times: np.ndarray) -> dict[str, np.ndarray]:
        if not self._hidden:
            return {}
        index = np.searchsorted(self._times, np.asarray(open_times, dtype="int64"))
        index = np.clip(index, 0, self.bars - 1)
        found = self._times[index] == np.asarray(open_times, dtype="int64")
        return {
            name: np.where(found, values[index], np.nan) for name, values in self._hidden.items()
        }


def replay_source(store: Store, settings: Settings) -> tuple[SeriesKey, pd.DataFrame, dict]:
    """Return the series a replay plays: the configured market's stored candles.

    The synthetic market is generated into the store first when it has none (deterministic,
    so this is the series `agora data synth` makes). Any other source must be stored already
    (`agora data import`, `agora data download`).

    Returns:
        The series, its candles and its hidden series (by name, aligned with the candles).

    Raises:
        DataError: the series has no candles.
    """
    from agent.market.data import default_key
    from agent.market.synthetic import PLANTED_SERIES_NAME, synth

    key = default_key(settings)
    if settings.market.source == "synthetic" and store.last_open_time(key) is None:
        synth(store, settings.market.synthetic, key.symbol, key.timeframe)
    candles = store.read_candles(key)
    if candles.empty:
        raise DataError(
            f"no candles stored for {key} to replay: fetch or import them first "
            "(agora data download / agora data import), or use service.feed: exchange"
        )
    hidden = {}
    planted = store.read_hidden_series(key, PLANTED_SERIES_NAME)
    if len(planted):
        times = candles["open_time"].to_numpy(dtype="int64")
        hidden[PLANTED_SERIES_NAME] = planted.reindex(times).to_numpy(dtype="float64")
    return key, candles, hidden


# --- exchange -----------------------------------------------------------------------------------
class ExchangeFeed:
    """Closed candles of one market, fetched from an exchange through ccxt as they close.

    Args:
        source: the exchange source (page size, retries and backoff come from its settings).
        grace_s: how long after its close a bar may still be decided.
        now_ms: the clock that decides which bars have closed (the fake exchange's in tests).
    """

    kind = "exchange"

    def __init__(self, source: Any, *, grace_s: float, now_ms: Callable[[], int]) -> None:
        self.source = source
        self.key = SeriesKey(source.key.source, source.key.symbol, source.key.timeframe)
        self.timeframe_ms = timeframe_ms(self.key.timeframe)
        self.grace_ms = int(grace_s * 1000)
        self._now_ms = now_ms

    def restart_clock(self, after_ms: int) -> None:
        """Nothing to do: the exchange's clock is the wall clock."""

    def _last_closed(self) -> int:
        return (self._now_ms() // self.timeframe_ms) * self.timeframe_ms - self.timeframe_ms

    def history(self, bars: int) -> pd.DataFrame:
        """Fetch the `bars` latest closed bars (raises ExchangeError after the retries)."""
        start = self._last_closed() - (bars - 1) * self.timeframe_ms
        pages = list(self.source.pages(start, None))
        return pd.concat(pages, ignore_index=True) if pages else empty_candles()

    def poll(self, after_ms: int, limit: int) -> FeedBatch:
        if self._last_closed() <= after_ms:
            return FeedBatch()
        pages: list[pd.DataFrame] = []
        rows = 0
        try:
            for page in self.source.pages(after_ms + self.timeframe_ms, None):
                pages.append(page)
                rows += len(page)
                if rows >= limit:
                    break
        except (ExchangeError, SourceError) as e:
            if not pages:
                return FeedBatch(error=str(e))
        frame = pd.concat(pages, ignore_index=True) if pages else empty_candles()
        return FeedBatch(frame.iloc[: max(0, limit)].reset_index(drop=True))

    def lag_bars(self, after_ms: int) -> int:
        return max(0, (self._last_closed() - after_ms) // self.timeframe_ms)

    def late_reason(self, open_ms: int) -> str | None:
        close_ms = open_ms + self.timeframe_ms
        late_ms = self._now_ms() - close_ms
        if late_ms <= self.grace_ms:
            return None
        return (
            f"late: the bar closed at {format_time_ms(close_ms)}, {late_ms / 1000:.0f} s ago, "
            f"beyond the {self.grace_ms / 1000:.0f} s grace"
        )

    def hidden(self, open_times: np.ndarray) -> dict[str, np.ndarray]:
        return {}


def bar_seconds(settings: Settings) -> float:
    """Return the wall-clock length of one bar for the configured feed (replay: 1 / speed)."""
    service = settings.service
    if service.feed == "replay":
        return 1.0 / service.replay_speed if service.replay_speed > 0 else 0.0
    return timeframe_ms(settings.market.timeframe) / 1000


def grace_seconds(settings: Settings) -> float:
    """Return `service.misfire_grace_s`, or half a bar (at least 1 s) when unset."""
    if settings.service.misfire_grace_s is not None:
        return settings.service.misfire_grace_s
    return max(1.0, bar_seconds(settings) / 2)


def poll_seconds(settings: Settings) -> float:
    """Return how often the tick job runs: the replay pace, or the exchange poll interval."""
    service = settings.service
    if service.feed == "replay":
        return min(1.0, max(0.05, bar_seconds(settings))) if service.replay_speed > 0 else 0.05
    if service.poll_s is not None:
        return service.poll_s
    return min(60.0, max(1.0, bar_seconds(settings) / 10))


def make_feed(
    store: Store,
    settings: Settings,
    *,
    exchange: Any = None,
    now_ms: Callable[[], int] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock = time.monotonic,
) -> MarketFeed:
    """Build the feed `service.feed` names.

    Args:
        store: the database (the replay reads its source series from it).
        settings: the configuration.
        exchange: a ready ccxt client (tests); built from `market.exchange` when None.
        now_ms: the exchange feed's clock (default: the wall clock).
        sleep: the backoff sleep between exchange retries.
        clock: the replay's monotonic clock.
    """
    service = settings.service
    if service.feed == "replay":
        source, candles, hidden = replay_source(store, settings)
        return ReplayFeed(
            candles,
            source,
            start_bar=service.start_bar,
            speed=service.replay_speed,
            hidden=hidden,
            clock=clock,
        )
    from agent.market.exchange import ExchangeSource, make_exchange, wall_clock_ms

    market = settings.market
    client = make_exchange(market.exchange) if exchange is None else exchange
    clock_ms = now_ms or wall_clock_ms
    exchange_source = ExchangeSource(
        client, market.symbol, market.timeframe, market.exchange, sleep=sleep, now_ms=clock_ms
    )
    return ExchangeFeed(exchange_source, grace_s=grace_seconds(settings), now_ms=clock_ms)
