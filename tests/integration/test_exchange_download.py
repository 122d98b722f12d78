"""Exchange downloads end to end: real ccxt, a real Store, a fake Binance on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt
import pandas as pd
import pytest

from agent.errors import ConfigError, ExchangeError, UsageError
from agent.market.exchange import ExchangeSource, download, make_exchange
from agent.market.schema import SeriesKey
from agent.market.sources import IngestResult
from agent.store import Store
from tests.fakes.fake_exchange import DEFAULT_START_MS, FakeExchange

HOUR_MS = 3_600_000
KEY = SeriesKey("binance", "BTC/USDT", "1h")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "agora.db") as db:
        yield db


class Sleeps(list[float]):
    """A no-op sleep that remembers what it was asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fetch(
    fake: FakeExchange,
    store: Store,
    *,
    since_ms: int = DEFAULT_START_MS,
    until_ms: int | None = None,
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    sleep: Sleeps | None = None,
    progress: Any = None,
    **settings: Any,
) -> IngestResult:
    return download(
        store,
        fake.settings(**settings),
        symbol,
        timeframe,
        since_ms,
        until_ms,
        progress=progress,
        sleep=Sleeps() if sleep is None else sleep,
        now_ms=fake.now,
    )


def assert_same_candles(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(stored.reset_index(drop=True), expected.reset_index(drop=True))


# --- complete, ordered, closed bars only -----------------------------------------------------
def test_multi_page_download_arrives_complete_in_order_without_gaps(
    fake_exchange: FakeExchange, store: Store
) -> None:
    reports: list[tuple[int, int | None]] = []
    result = fetch(
        fake_exchange, store, page_limit=1000, progress=lambda d, e: reports.append((d, e))
    )

    expected = fake_exchange.candles()
    assert len(expected) == 2_500
    stored = store.read_candles(KEY)
    assert_same_candles(stored, expected)
    assert stored["open_time"].diff().dropna().eq(HOUR_MS).all()
    assert (result.received, result.inserted, result.pages) == (2_500, 2_500, 3)
    assert fake_exchange.klines_starts() == [
        DEFAULT_START_MS,
        DEFAULT_START_MS + 1_000 * HOUR_MS,
        DEFAULT_START_MS + 2_000 * HOUR_MS,
    ]
    assert all(r.query["limit"] == "1000" for r in fake_exchange.klines_requests())
    assert reports == [(0, 2_500), (1_000, 2_500), (2_000, 2_500), (2_500, 2_500)]


def test_forming_candle_is_served_but_not_stored_until_it_closes(
    fake_exchange: FakeExchange, store: Store
) -> None:
    forming_ms = fake_exchange.now_ms // HOUR_MS * HOUR_MS
    fetch(fake_exchange, store)
    assert store.last_open_time(KEY) == forming_ms - HOUR_MS

    fake_exchange.now_ms += HOUR_MS  # the bar closes, with values unlike its forming self
    result = fetch(fake_exchange, store)

    assert result.inserted == 1
    assert store.last_open_time(KEY) == forming_ms
    assert_same_candles(store.read_candles(KEY), fake_exchange.candles())


def test_download_stops_at_until(fake_exchange: FakeExchange, store: Store) -> None:
    until = DEFAULT_START_MS + 99 * HOUR_MS
    result = fetch(fake_exchange, store, until_ms=until)

    assert result.inserted == 100
    assert store.last_open_time(KEY) == until
    assert len(fake_exchange.klines_requests()) == 1


def test_page_limit_above_the_exchange_maximum_still_pages_through(
    fake_exchange: FakeExchange, store: Store
) -> None:
    result = fetch(fake_exchange, store, page_limit=5_000)  # ccxt caps binance spot at 1000

    assert result.inserted == 2_500
    assert [r.query["limit"] for r in fake_exchange.klines_requests()] == ["1000"] * 3


# --- retries --------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["429", "418", "500", "503", "drop", "slow"])
def test_transient_failure_is_retried_and_download_completes(
    fake_exchange: FakeExchange, store: Store, fault: str
) -> None:
    fake_exchange.fail(fault, delay_s=1.0)
    sleeps = Sleeps()
    result = fetch(fake_exchange, store, sleep=sleeps, timeout_ms=200, backoff_s=0.5)

    assert result.inserted == 2_500
    assert_same_candles(store.read_candles(KEY), fake_exchange.candles())
    assert fake_exchange.klines_starts()[:2] == [DEFAULT_START_MS, DEFAULT_START_MS]
    assert len(fake_exchange.klines_requests()) == 3 + 1
    assert sleeps == [0.5]


def test_rate_limit_then_dropped_connection_back_off_exponentially(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("429")
    fake_exchange.fail("drop")
    sleeps = Sleeps()
    result = fetch(fake_exchange, store, sleep=sleeps, max_tries=3, backoff_s=1.5)

    assert result.inserted == 2_500
    assert len(fake_exchange.klines_requests()) == 3 + 2
    assert sleeps == [1.5, 3.0]


def test_exhausted_retries_raise_exchange_error_and_keep_the_pages_that_arrived(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("drop", skip=1, times=None)  # the first page arrives, then nothing does
    sleeps = Sleeps()
    with pytest.raises(ExchangeError) as caught:
        fetch(fake_exchange, store, sleep=sleeps, max_tries=4, backoff_s=1.0)

    message = str(caught.value)
    assert "binance" in message and "BTC/USDT" in message
    assert "since 2024-02-11T16:00:00Z" in message and "4 tries" in message
    assert "NetworkError" in message
    assert message.endswith(
        "; 1000 candle(s) from 2024-01-01T00:00:00Z to 2024-02-11T15:00:00Z were written "
        "before it (1 page(s), 1000 new); running the same command again continues from there "
        "(writes are idempotent)"
    )
    assert isinstance(caught.value.__cause__, ccxt.NetworkError)
    assert sleeps == [1.0, 2.0, 4.0]
    assert len(fake_exchange.klines_requests()) == 1 + 4
    assert_same_candles(store.read_candles(KEY), fake_exchange.candles().iloc[:1_000])


# --- resuming from the store ----------------------------------------------------------------
def test_second_download_of_the_same_range_makes_no_klines_requests(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fetch(fake_exchange, store)
    fetch(fake_exchange, store, until_ms=DEFAULT_START_MS + 500 * HOUR_MS)
    fake_exchange.reset_requests()

    again = fetch(fake_exchange, store)
    bounded = fetch(fake_exchange, store, until_ms=DEFAULT_START_MS + 500 * HOUR_MS)

    assert (again.inserted, again.pages, bounded.inserted, bounded.pages) == (0, 0, 0, 0)
    assert fake_exchange.requests == []  # not even the markets are loaded


def test_resume_after_an_interrupted_download_fetches_only_the_missing_part(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("503", skip=1, times=None)
    with pytest.raises(ExchangeError):
        fetch(fake_exchange, store)
    assert store.last_open_time(KEY) == DEFAULT_START_MS + 999 * HOUR_MS
    fake_exchange.clear_faults()
    fake_exchange.reset_requests()

    result = fetch(fake_exchange, store)

    assert (result.inserted, result.unchanged) == (1_500, 0)
    assert fake_exchange.klines_starts() == [
        DEFAULT_START_MS + 1_000 * HOUR_MS,
        DEFAULT_START_MS + 2_000 * HOUR_MS,
    ]
    assert_same_candles(store.read_candles(KEY), fake_exchange.candles())


def test_earlier_since_fetches_only_the_head_before_the_stored_bars(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fetch(fake_exchange, store, since_ms=DEFAULT_START_MS + 100 * HOUR_MS)
    fake_exchange.reset_requests()

    result = fetch(fake_exchange, store)

    assert result.inserted == 100
    assert fake_exchange.klines_starts() == [DEFAULT_START_MS]
    assert_same_candles(store.read_candles(KEY), fake_exchange.candles())


def test_an_exchange_repeating_the_same_page_does_not_loop(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("stale", skip=1, times=None)  # ignores startTime after the first page
    result = fetch(fake_exchange, store)

    assert result.inserted == 1_000
    assert len(fake_exchange.klines_requests()) == 2


# --- clear errors ---------------------------------------------------------------------------
def test_unknown_symbol_is_a_usage_error_before_any_candle_request(
    fake_exchange: FakeExchange, store: Store
) -> None:
    with pytest.raises(UsageError, match=r"binance has no market 'XRP/USDT'"):
        fetch(fake_exchange, store, symbol="XRP/USDT")
    with pytest.raises(UsageError, match=r"use the unified symbol 'BTC/USDT'"):
        fetch(fake_exchange, store, symbol="BTCUSDT")
    assert fake_exchange.klines_requests() == []


def test_unsupported_timeframe_is_a_usage_error(fake_exchange: FakeExchange, store: Store) -> None:
    with pytest.raises(UsageError, match=r"does not offer the timeframe '7m' \(it offers: 1s, 1m"):
        fetch(fake_exchange, store, timeframe="7m")


def test_malformed_response_is_a_clear_exchange_error(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("malformed")
    with pytest.raises(ExchangeError) as caught:
        fetch(fake_exchange, store)

    message = str(caught.value)
    assert message.startswith("binance BTC/USDT 1h since 2024-01-01T00:00:00Z: fetching candles")
    assert "cannot be read" in message and "not valid JSON" in message
    assert len(fake_exchange.klines_requests()) == 1  # a garbled answer is not retried
    assert store.last_open_time(KEY) is None


def test_markets_that_cannot_load_are_an_exchange_error(
    fake_exchange: FakeExchange, store: Store
) -> None:
    fake_exchange.fail("502", path="/api/v3/exchangeInfo", times=None)
    with pytest.raises(ExchangeError, match=r"loading the markets failed after 2 tries"):
        fetch(fake_exchange, store, max_tries=2)


def test_range_that_ends_before_it_starts_is_a_usage_error(
    fake_exchange: FakeExchange, store: Store
) -> None:
    with pytest.raises(UsageError, match="before it starts"):
        fetch(fake_exchange, store, until_ms=DEFAULT_START_MS - HOUR_MS)


def test_source_needs_a_start_time(fake_exchange: FakeExchange) -> None:
    source = ExchangeSource(
        make_exchange(fake_exchange.settings()), "BTC/USDT", "1h", fake_exchange.settings()
    )
    assert source.key == KEY
    with pytest.raises(UsageError, match="needs a start time"):
        next(source.pages(None, None))


# --- building the client --------------------------------------------------------------------
def test_api_key_is_taken_from_the_environment_variable_named_in_config(
    fake_exchange: FakeExchange, store: Store
) -> None:
    settings = fake_exchange.settings(api_key_env="AGORA_TEST_KEY", secret_env="AGORA_TEST_SECRET")
    environ = {"AGORA_TEST_KEY": "key-123", "AGORA_TEST_SECRET": "secret-456"}
    exchange = make_exchange(settings, environ=environ)
    assert (exchange.apiKey, exchange.secret) == ("key-123", "secret-456")

    download(
        store,
        settings,
        "BTC/USDT",
        "1h",
        DEFAULT_START_MS,
        exchange=exchange,
        now_ms=fake_exchange.now,
    )

    signed = [r for r in fake_exchange.requests if r.path.startswith("/sapi/")]
    assert signed, "with credentials, ccxt loads currencies from a signed endpoint"
    assert all(r.headers["x-mbx-apikey"] == "key-123" for r in signed)
    assert all("x-mbx-apikey" not in r.headers for r in fake_exchange.klines_requests())


def test_missing_credential_variable_is_a_config_error_naming_it(
    fake_exchange: FakeExchange,
) -> None:
    settings = fake_exchange.settings(api_key_env="AGORA_TEST_KEY")
    with pytest.raises(ConfigError, match="AGORA_TEST_KEY"):
        make_exchange(settings, environ={})


def test_unknown_exchange_id_is_a_config_error_with_suggestions() -> None:
    from agent.config import ExchangeSettings

    with pytest.raises(ConfigError, match=r"'binanse'.*did you mean binance.*ccxt\.exchanges"):
        make_exchange(ExchangeSettings(id="binanse"))


def test_urls_merge_over_the_defaults_and_settings_pass_through() -> None:
    from agent.config import ExchangeSettings

    settings = ExchangeSettings(
        urls={"api": {"public": "http://127.0.0.1:9/api/v3"}},
        options={"fetchMarkets": {"types": ["spot"]}},
        rate_limit=False,
        timeout_ms=1_234,
    )
    exchange = make_exchange(settings)
    assert exchange.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"
    assert exchange.urls["api"]["private"] == "https://api.binance.com/api/v3"
    assert exchange.urls["www"] == "https://www.binance.com"
    assert exchange.options["fetchMarkets"]["types"] == ["spot"]
    assert exchange.options["fetchMarkets"]["loadAllOptions"] is False  # deep-merged too
    assert (exchange.enableRateLimit, exchange.timeout) == (False, 1_234)

    sandbox = make_exchange(settings.model_copy(update={"sandbox": True}))
    assert sandbox.urls["api"]["public"] == "http://127.0.0.1:9/api/v3"  # ours win over testnet
    assert sandbox.urls["api"]["private"] == "https://testnet.binance.vision/api/v3"
