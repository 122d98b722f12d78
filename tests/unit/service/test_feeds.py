"""The feeds: a paced replay with a virtual clock, and an exchange feed's lateness and errors."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from agent.config import SyntheticSettings
from agent.errors import ConfigError, ExchangeError
from agent.market.schema import SeriesKey
from agent.market.synthetic import generate
from agent.service.feeds import ExchangeFeed, ReplayFeed, replay_key

HOUR_MS = 3_600_000
SOURCE = SeriesKey("synthetic", "SYN/USD", "1h")


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return generate(SyntheticSettings(bars=60, seed=3), "1h").candles


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(candles: pd.DataFrame, speed: float, clock: Clock, start_bar: int = 40) -> ReplayFeed:
    hidden = {"planted": np.arange(len(candles), dtype="float64")}
    return ReplayFeed(candles, SOURCE, start_bar=start_bar, speed=speed, hidden=hidden, clock=clock)


def times(batch_candles: pd.DataFrame) -> list[int]:
    return batch_candles["open_time"].tolist()


def test_history_is_the_bars_before_the_first_decision(candles: pd.DataFrame) -> None:
    replay = feed(candles, 1.0, Clock())
    assert times(replay.history(1_000)) == times(candles.iloc[:40])
    assert times(replay.history(10)) == times(candles.iloc[30:40])
    assert replay.key == replay_key(SOURCE) == SeriesKey("replay-synthetic", "SYN/USD", "1h")


def test_the_replay_reveals_one_bar_at_once_then_at_its_pace(candles: pd.DataFrame) -> None:
    clock = Clock()
    replay = feed(candles, 4.0, clock)
    last_history = int(candles["open_time"].iloc[39])
    replay.restart_clock(last_history)

    assert times(replay.poll(last_history, 100).candles) == times(candles.iloc[40:41])
    clock.now += 0.5  # two more bars at 4 bars per second
    assert times(replay.poll(last_history, 100).candles) == times(candles.iloc[40:43])
    assert times(replay.poll(last_history, 2).candles) == times(candles.iloc[40:42])
    assert replay.lag_bars(last_history) == 3
    assert replay.late_reason(int(candles["open_time"].iloc[40])) is None


def test_a_restart_continues_after_the_last_bar_handled(candles: pd.DataFrame) -> None:
    clock = Clock()
    replay = feed(candles, 1.0, clock)
    handled = int(candles["open_time"].iloc[47])
    clock.now += 1_000  # the service was down: replay time does not run meanwhile
    replay.restart_clock(handled)
    assert times(replay.poll(handled, 100).candles) == times(candles.iloc[48:49])


def test_speed_zero_reveals_everything_and_the_end_is_reported(candles: pd.DataFrame) -> None:
    replay = feed(candles, 0.0, Clock())
    first = replay.poll(int(candles["open_time"].iloc[39]), 1_000)
    assert times(first.candles) == times(candles.iloc[40:]) and not first.exhausted
    assert replay.poll(int(candles["open_time"].iloc[-1]), 1_000).exhausted


def test_hidden_series_follow_the_bars(candles: pd.DataFrame) -> None:
    replay = feed(candles, 0.0, Clock())
    wanted = candles["open_time"].to_numpy()[[3, 41]]
    np.testing.assert_array_equal(replay.hidden(wanted)["planted"], [3.0, 41.0])


@pytest.mark.parametrize("start_bar", [0, 60, 61])
def test_a_start_bar_outside_the_series_is_a_config_error(
    candles: pd.DataFrame, start_bar: int
) -> None:
    with pytest.raises(ConfigError, match=r"service\.start_bar"):
        feed(candles, 1.0, Clock(), start_bar=start_bar)


class Source:
    """An exchange source with the ExchangeSource interface: pages, or an error."""

    key = SeriesKey("binance", "BTC/USDT", "1h")

    def __init__(self, rows: pd.DataFrame, error: str | None = None) -> None:
        self.rows = rows
        self.error = error
        self.asked: list[int | None] = []

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        self.asked.append(start_ms)
        if self.error:
            raise ExchangeError(self.error)
        yield self.rows[self.rows["open_time"] >= (start_ms or 0)].reset_index(drop=True)


def test_the_exchange_feed_asks_only_once_a_bar_has_closed(candles: pd.DataFrame) -> None:
    rows = candles.iloc[:10]
    last = int(rows["open_time"].iloc[-1])
    now = [last + HOUR_MS + 5_000]  # bar `last` closed 5 s ago
    source = Source(rows)
    exchange = ExchangeFeed(source, grace_s=1_800, now_ms=lambda: now[0])

    assert exchange.poll(last, 10).candles.empty and source.asked == []
    assert times(exchange.poll(last - HOUR_MS, 10).candles) == [last]
    assert exchange.lag_bars(last - 2 * HOUR_MS) == 2


def test_the_exchange_feed_reports_errors_instead_of_raising(candles: pd.DataFrame) -> None:
    rows = candles.iloc[:10]
    last = int(rows["open_time"].iloc[-1])
    source = Source(rows, error="binance BTC/USDT 1h: fetching candles failed after 3 tries")
    exchange = ExchangeFeed(source, grace_s=1_800, now_ms=lambda: last + 2 * HOUR_MS)
    batch = exchange.poll(last - HOUR_MS, 10)
    assert batch.candles.empty and batch.error is not None and "after 3 tries" in batch.error


def test_a_bar_is_late_once_its_grace_has_passed(candles: pd.DataFrame) -> None:
    open_ms = int(candles["open_time"].iloc[5])
    close_ms = open_ms + HOUR_MS
    now = [close_ms + 1_799_000]
    exchange = ExchangeFeed(Source(candles), grace_s=1_800, now_ms=lambda: now[0])
    assert exchange.late_reason(open_ms) is None
    now[0] = close_ms + 1_801_000
    reason = exchange.late_reason(open_ms)
    assert reason is not None and reason.startswith("late:") and "1800 s grace" in reason
