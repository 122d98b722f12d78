"""The exchange feed through real ccxt against the local fake Binance: faults cost time, not bars.

Timeouts, rate limits and dropped connections are retried with backoff inside the poll; once
the retries are spent the bar is reported as delayed and tried again at the next poll, and
decided if it arrives within the grace; a malformed response is not retried but reported the
same way; a bar that arrives too late is skipped with its reason; a bad candle is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.audit.outbox import read_decisions
from agent.config import Settings
from agent.market.schema import SeriesKey
from agent.service import jobs, ledger
from tests.fakes import fake_exchange
from tests.fakes.fake_exchange import FakeExchange
from tests.integration.service.conftest import Started, StartRuntime
from tests.unit.service.fixtures import service_settings

HOUR_MS = 3_600_000
KEY = SeriesKey("binance", "BTC/USDT", "1h")


class Sleeps(list[float]):
    """The retries' backoff, recorded instead of slept."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def exchange_settings(data_dir: Path, fake: FakeExchange, **exchange: Any) -> Settings:
    base = service_settings(data_dir, feed="exchange", start_bar=120)
    options = {"timeout_ms": 400, "max_tries": 3, "backoff_s": 0.5, **exchange}
    market = base.market.model_copy(
        update={
            "source": "exchange",
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "exchange": fake.settings(**options),
        }
    )
    return base.model_copy(update={"market": market})


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange() as exchange:
        exchange.now_ms = (exchange.now_ms // HOUR_MS) * HOUR_MS + 10_000  # 10 s into a bar
        yield exchange


@pytest.fixture
def service(tmp_path: Path, fake: FakeExchange, start_runtime: StartRuntime) -> Started:
    sleeps = Sleeps()
    started = start_runtime(
        exchange_settings(tmp_path / "data", fake), now_ms=fake.now, sleep=sleeps
    )
    started.sleeps = sleeps  # type: ignore[attr-defined]
    return started


def next_bar(fake: FakeExchange, seconds_after_close: float = 5.0) -> int:
    """Move the fake's clock to just after the close of the next bar; return that bar's open."""
    open_ms = (fake.now_ms // HOUR_MS) * HOUR_MS
    fake.now_ms = open_ms + HOUR_MS + int(seconds_after_close * 1000)
    return open_ms


def decided_bars(service: Started) -> list[int]:
    return [d.record().bar_time_ms for d in read_decisions(service.runtime.require_store())]


def test_history_then_each_closed_bar_is_decided_from_the_exchange(
    service: Started, fake: FakeExchange
) -> None:
    runtime = service.runtime
    stored = runtime.require_store().read_candles(KEY)
    assert len(stored) == 120 and runtime.market == "binance:BTC/USDT:1h"

    bar = next_bar(fake)
    assert jobs.tick(runtime).bars == 1
    assert jobs.tick(runtime).status == "idle"  # nothing new until the next close
    assert decided_bars(service) == [bar]
    served = fake.candles().set_index("open_time").loc[bar]
    assert runtime.require_store().read_candles(KEY).set_index("open_time").loc[bar].equals(served)


@pytest.mark.parametrize(("fault", "times"), [("slow", 3), ("429", 3), ("drop", 3), ("503", 3)])
def test_spent_retries_delay_the_bar_which_is_decided_when_it_arrives(
    service: Started, fake: FakeExchange, fault: str, times: int
) -> None:
    runtime = service.runtime
    bar = next_bar(fake)
    fake.fail(fault, times=times, delay_s=1.0)

    delayed = jobs.tick(runtime)
    fake.now_ms += 60_000  # the next poll, a minute later: well within the grace
    arrived = jobs.tick(runtime)

    assert delayed.status == "idle" and "after 3 tries" in delayed.detail
    assert service.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]
    (report,) = service.events("bar_delayed")
    assert report["reason"].startswith("binance BTC/USDT 1h")
    assert arrived.bars == 1 and decided_bars(service) == [bar]
    assert ledger.tick_counts(runtime.require_store(), runtime.market)["skipped"] == 0


def test_a_rate_limit_within_the_retries_costs_nothing(
    service: Started, fake: FakeExchange
) -> None:
    bar = next_bar(fake)
    fake.fail("429", times=2)

    assert jobs.tick(service.runtime).bars == 1
    assert service.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]
    assert decided_bars(service) == [bar] and service.events("bar_delayed") == []


def test_a_malformed_response_is_reported_without_retrying(
    service: Started, fake: FakeExchange
) -> None:
    bar = next_bar(fake)
    fake.fail("malformed")

    first = jobs.tick(service.runtime)
    second = jobs.tick(service.runtime)

    assert first.status == "idle" and "cannot be read" in first.detail
    assert service.sleeps == []  # type: ignore[attr-defined]
    assert second.bars == 1 and decided_bars(service) == [bar]


def test_a_bar_that_arrives_after_its_grace_is_skipped_with_the_reason(
    service: Started, fake: FakeExchange
) -> None:
    runtime = service.runtime
    late = next_bar(fake)
    fake.fail("500", times=None)
    jobs.tick(runtime)
    fake.now_ms += 40 * 60_000  # 40 minutes: beyond half an hour of grace
    jobs.tick(runtime)
    fake.clear_faults()
    current = next_bar(fake)  # the next bar has closed too

    assert jobs.tick(runtime).bars == 1
    assert decided_bars(service) == [current]
    (skip,) = service.events("bar_skipped")
    assert skip["reason"].startswith("late:")
    row = ledger.last_tick(runtime.require_store(), runtime.market)
    assert row is not None and row.bar_time_ms == current
    skipped = ledger.recent_skips(runtime.require_store(), runtime.market)
    assert [(s.bar_time_ms, s.status) for s in skipped] == [(late, "skipped")]


def test_a_bad_candle_is_refused_and_reported(
    service: Started, fake: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = service.runtime
    bad = next_bar(fake)
    real = fake_exchange.candle_at

    def corrupt(symbol: Any, interval_ms: int, open_ms: int, now_ms: int) -> list[Any]:
        row = real(symbol, interval_ms, open_ms, now_ms)
        if open_ms == bad:
            row[2], row[3] = row[3], row[2]  # high below low
        return row

    monkeypatch.setattr(fake_exchange, "candle_at", corrupt)
    assert jobs.tick(runtime).status == "ok"
    good = next_bar(fake)
    assert jobs.tick(runtime).bars == 1

    (skip,) = service.events("bar_skipped")
    assert skip["reason"].startswith("bad candle:") and "high" in skip["reason"]
    assert decided_bars(service) == [good]
    assert bad not in runtime.require_store().read_candles(KEY)["open_time"].tolist()
    assert runtime.metrics.get("agora_bars_skipped_total") == 1
