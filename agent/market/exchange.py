"""Candles from a real exchange through ccxt: build the client, page through history, resume.

`make_exchange` turns `ExchangeSettings` into a ccxt client; `ExchangeSource` is the
`CandleSource` that pages forward through an exchange's OHLCV history (closed bars only, with
retries and backoff on transient failures); `download` is the library call behind
`agora data download`, which fetches only what the store does not already hold.

Every ccxt exception is wrapped at this boundary:

    ccxt.OperationFailed (NetworkError, RateLimitExceeded, DDoSProtection, RequestTimeout,
        ExchangeNotAvailable, ...)      retried with backoff, then ExchangeError
    ccxt.BadResponse, unreadable body   ExchangeError at once (the answer will not improve)
    any other ccxt.BaseError            ExchangeError at once (BadSymbol, AuthenticationError, ...)
    unknown symbol or timeframe         UsageError, before any candle is requested
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import ccxt
import pandas as pd

from agent.config import ExchangeSettings
from agent.errors import ConfigError, ExchangeError, UsageError
from agent.market.schema import CANDLE_COLUMNS, SeriesKey, format_time_ms, timeframe_ms
from agent.market.sources import IngestResult, Progress, ingest
from agent.store import Store

T = TypeVar("T")

_MESSAGE_CHARS = 300  # ccxt messages can carry a whole HTML error page


def wall_clock_ms() -> int:
    """Return the current UTC time in milliseconds (the default clock of `ExchangeSource`)."""
    return time.time_ns() // 1_000_000


def make_exchange(
    settings: ExchangeSettings, environ: Mapping[str, str] = os.environ
) -> ccxt.Exchange:
    """Build the ccxt client that `settings` describes.

    `settings.urls` is deep-merged over the exchange's own urls after sandbox mode is set, so a
    single endpoint (`urls.api.public`) can be pointed elsewhere without restating the rest.
    Credentials come from the environment variables that `api_key_env` / `secret_env` name.

    Raises:
        ConfigError: unknown exchange id, a named credential variable that is not set, or
            sandbox mode requested from an exchange that has none.
    """
    exchange_class = getattr(ccxt, settings.id, None) if settings.id in ccxt.exchanges else None
    if exchange_class is None:
        close = difflib.get_close_matches(settings.id, ccxt.exchanges, n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(
            f"market.exchange.id = {settings.id!r} is not an exchange ccxt knows; {hint}"
            "the full list is ccxt.exchanges"
        )
    config: dict[str, Any] = {
        "enableRateLimit": settings.rate_limit,
        "timeout": settings.timeout_ms,
        "enableLastHttpResponse": True,  # lets us tell an unreadable body from an empty page
        "options": copy.deepcopy(settings.options),  # ccxt mutates its options
    }
    for field, ccxt_name in (("api_key_env", "apiKey"), ("secret_env", "secret")):
        variable = getattr(settings, field)
        if variable is None:
            continue
        value = environ.get(variable)
        if not value:
            raise ConfigError(
                f"market.exchange.{field} names the environment variable {variable}, "
                "which is not set (or empty); export it or remove the key"
            )
        config[ccxt_name] = value
    exchange: ccxt.Exchange = exchange_class(config)
    if settings.sandbox:
        try:
            exchange.set_sandbox_mode(True)
        except ccxt.NotSupported as e:
            raise ConfigError(
                f"market.exchange.sandbox is true but {settings.id} has no sandbox (testnet)"
            ) from e
    if settings.urls:
        exchange.urls = deep_merge(exchange.urls, settings.urls)
    return exchange


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `override` laid over it, merging nested mappings key by key."""
    merged = dict(base)
    for name, value in override.items():
        current = merged.get(name)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[name] = deep_merge(current, value)
        else:
            merged[name] = value
    return merged


def candles_frame(rows: list[list[Any]]) -> pd.DataFrame:
    """Convert ccxt OHLCV rows (`[[ms, o, h, l, c, v], ...]`) into a candle frame.

    Raises:
        ValueError: a row is not a timestamp followed by five numbers.
    """
    table = []
    for row in rows:
        if not isinstance(row, list | tuple) or len(row) < 6 or any(v is None for v in row[:6]):
            raise ValueError(f"expected [timestamp, open, high, low, close, volume], got {row!r}")
        table.append([int(row[0]), *(float(v) for v in row[1:6])])
    frame = pd.DataFrame(table, columns=list(CANDLE_COLUMNS))
    frame = frame.astype({"open_time": "int64", **{c: "float64" for c in CANDLE_COLUMNS[1:]}})
    return frame.sort_values("open_time", kind="stable").reset_index(drop=True)


class ExchangeSource:
    """The OHLCV history of one market on one exchange, paged forward, closed bars only.

    Args:
        exchange: a ccxt client (see `make_exchange`).
        symbol: a unified ccxt symbol such as ``BTC/USDT``.
        timeframe: a timeframe the exchange offers, such as ``1h``.
        settings: page size, retries and backoff.
        sleep: called with the backoff in seconds between tries (inject a no-op in tests).
        now_ms: the clock that decides which bars have closed.
    """

    def __init__(
        self,
        exchange: ccxt.Exchange,
        symbol: str,
        timeframe: str,
        settings: ExchangeSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now_ms: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.settings = settings
        self.timeframe_ms = timeframe_ms(timeframe)
        self._sleep = sleep
        self._now_ms = now_ms
        self._checked = False

    @property
    def key(self) -> SeriesKey:
        return SeriesKey(str(self.exchange.id), self.symbol, self.timeframe)

    def last_closed_open_ms(self) -> int:
        """Return the open time of the latest bar that has closed by now."""
        return (self._now_ms() // self.timeframe_ms) * self.timeframe_ms - self.timeframe_ms

    def stop_ms(self, end_ms: int | None) -> int:
        """Return the last open time a download up to `end_ms` can reach (closed bars only)."""
        last_closed = self.last_closed_open_ms()
        return last_closed if end_ms is None else min(end_ms, last_closed)

    def expected_bars(self, start_ms: int, end_ms: int | None) -> int:
        """Return how many closed bars lie in [start_ms, end_ms] (an upper bound: listings)."""
        stop = self.stop_ms(end_ms)
        step = self.timeframe_ms
        return max(0, stop // step - math.ceil(start_ms / step) + 1)

    def check_market(self) -> None:
        """Load the markets (once) and refuse an unknown symbol or an unsupported timeframe.

        Raises:
            UsageError: the symbol or timeframe is not offered by the exchange.
            ExchangeError: the markets could not be loaded.
        """
        if self._checked:
            return
        name = self.exchange.id
        if not self.exchange.has.get("fetchOHLCV"):
            raise UsageError(f"{name} does not provide candles (ccxt has no fetchOHLCV for it)")
        markets = self._call("loading the markets", None, self.exchange.load_markets)
        if self.symbol not in markets:
            raise UsageError(self._unknown_symbol_message(markets))
        timeframes = self.exchange.timeframes or {}
        if self.timeframe not in timeframes:
            offered = ", ".join(timeframes) or "none"
            raise UsageError(
                f"{name} does not offer the timeframe {self.timeframe!r} (it offers: {offered})"
            )
        self._checked = True

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        """Yield closed bars with open times in [start_ms, end_ms], oldest first, a page at a time.

        Stops at `end_ms`, at the last closed bar, or when a page brings nothing new (which also
        ends the loop if the exchange keeps answering with the same page).

        Raises:
            UsageError: no start time, an unknown symbol or an unsupported timeframe.
            ExchangeError: the exchange failed after the configured retries, refused the
                request, or sent a response that cannot be read.
        """
        if start_ms is None:
            raise UsageError(f"downloading {self.key} needs a start time (since)")
        stop = self.stop_ms(end_ms)
        since = start_ms
        if since > stop:
            return
        self.check_market()
        while since <= stop:
            frame = self._fetch_page(since)
            frame = frame[(frame["open_time"] >= since) & (frame["open_time"] <= stop)]
            if frame.empty:
                return
            yield frame.reset_index(drop=True)
            since = int(frame["open_time"].iloc[-1]) + self.timeframe_ms

    # --- internals ------------------------------------------------------------------------
    def _fetch_page(self, since: int) -> pd.DataFrame:
        def fetch() -> list[list[Any]]:
            rows = self.exchange.fetch_ohlcv(
                self.symbol, self.timeframe, since=since, limit=self.settings.page_limit
            )
            if not rows:
                self._refuse_unreadable_body()
            return rows

        rows = self._call("fetching candles", since, fetch)
        try:
            return candles_frame(rows)
        except (TypeError, ValueError) as e:
            raise ExchangeError(
                f"{self._what(since)}: the exchange sent malformed candles: {_short(e)}"
            ) from e

    def _refuse_unreadable_body(self) -> None:
        """Raise BadResponse if the last body was not JSON (ccxt reads it as an empty page)."""
        body = getattr(self.exchange, "last_http_response", None)
        if not isinstance(body, str) or not body.strip():
            return
        try:
            json.loads(body)
        except ValueError as e:
            raise ccxt.BadResponse(f"the response body is not valid JSON: {body[:80]!r}") from e

    def _call(self, action: str, since: int | None, fn: Callable[[], T]) -> T:
        """Run one exchange call, retrying transient failures with exponential backoff."""
        tries = self.settings.max_tries
        last_error: Exception | None = None
        for attempt in range(tries):
            try:
                return fn()
            except ccxt.BadResponse as e:
                raise ExchangeError(
                    f"{self._what(since)}: {action} failed: the exchange sent a response that "
                    f"cannot be read ({_short(e)})"
                ) from e
            except ccxt.OperationFailed as e:  # NetworkError, RateLimitExceeded, DDoSProtection
                last_error = e
                if attempt + 1 < tries:
                    self._sleep(self.settings.backoff_s * 2**attempt)
            except ccxt.BaseError as e:
                raise ExchangeError(
                    f"{self._what(since)}: {action} was refused: {type(e).__name__}: {_short(e)}"
                ) from e
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:
                raise ExchangeError(
                    f"{self._what(since)}: {action} failed: the exchange sent a response that "
                    f"cannot be read ({type(e).__name__}: {_short(e)})"
                ) from e
        assert last_error is not None
        raise ExchangeError(
            f"{self._what(since)}: {action} failed after {tries} tries; last error: "
            f"{type(last_error).__name__}: {_short(last_error)}"
        ) from last_error

    def _what(self, since: int | None) -> str:
        where = f"{self.exchange.id} {self.symbol} {self.timeframe}"
        return where if since is None else f"{where} since {format_time_ms(since)}"

    def _unknown_symbol_message(self, markets: Mapping[str, Any]) -> str:
        name = self.exchange.id
        by_id = getattr(self.exchange, "markets_by_id", None) or {}
        if self.symbol in by_id:  # the exchange's own id (BTCUSDT) instead of the unified one
            unified = by_id[self.symbol][0]["symbol"]
            return f"{name} has no market {self.symbol!r}: use the unified symbol {unified!r}"
        close = difflib.get_close_matches(self.symbol, list(markets), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"{name} has no market {self.symbol!r} ({len(markets)} markets listed){hint}"


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def missing_spans(
    store: Store, key: SeriesKey, since_ms: int, stop_ms: int
) -> list[tuple[int, int]]:
    """Return the spans of [since_ms, stop_ms] to fetch, given what the store already holds.

    The stored series is taken as contiguous (gaps inside it are not refetched; `agora data
    check` reports them): fetch what lies before its first bar and after its last. A range that
    starts before the market was listed thus costs one (empty) request for the head each time.
    """
    step = timeframe_ms(key.timeframe)
    if since_ms > stop_ms:
        return []
    last = store.last_open_time(key)
    if last is None or last < since_ms:
        return [(since_ms, stop_ms)]
    first = store.first_open_time(key, start_ms=since_ms)
    spans: list[tuple[int, int]] = []
    if first is not None and first - step >= since_ms:
        spans.append((since_ms, min(stop_ms, first - step)))
    if last + step <= stop_ms:
        spans.append((last + step, stop_ms))
    return spans


def download(
    store: Store,
    settings: ExchangeSettings,
    symbol: str,
    timeframe: str,
    since_ms: int,
    until_ms: int | None = None,
    *,
    exchange: ccxt.Exchange | None = None,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    now_ms: Callable[[], int] = wall_clock_ms,
) -> IngestResult:
    """Download closed candles of `symbol` with open times in [since_ms, until_ms] into `store`.

    Resumes from the store: bars already held are not requested again, so repeating a download
    costs no candle requests, and an interrupted one continues after its last complete page.
    The series is stored under the source name `exchange.id` (e.g. ``binance``).

    Args:
        store: where the candles go, each page in its own transaction.
        settings: the exchange to use and how to page and retry.
        symbol: a unified ccxt symbol such as ``BTC/USDT``.
        timeframe: a timeframe the exchange offers, such as ``1h``.
        since_ms: the first open time wanted (UTC milliseconds).
        until_ms: the last open time wanted; None for up to the last closed bar.
        exchange: a ready client; built from `settings` when None.
        progress: called with (bars done, bars expected) as pages arrive.
        sleep: the backoff sleep between retries.
        now_ms: the clock that decides which bars have closed.

    Raises:
        UsageError: an empty range, an unknown symbol or an unsupported timeframe.
        ExchangeError: the exchange failed; the pages stored before the failure are kept.
    """
    if until_ms is not None and until_ms < since_ms:
        raise UsageError(
            f"the range ends ({format_time_ms(until_ms)}) before it starts "
            f"({format_time_ms(since_ms)})"
        )
    client = make_exchange(settings) if exchange is None else exchange
    source = ExchangeSource(client, symbol, timeframe, settings, sleep=sleep, now_ms=now_ms)
    spans = missing_spans(store, source.key, since_ms, source.stop_ms(until_ms))
    expected = sum(source.expected_bars(start, end) for start, end in spans)
    done = 0
    if progress is not None:
        progress(0, expected)

    def on_page(page: pd.DataFrame) -> None:
        nonlocal done
        done += len(page)
        if progress is not None:
            progress(done, max(expected, done))

    received = inserted = unchanged = replaced = pages = 0
    for start, end in spans:
        result = ingest(store, source, start_ms=start, end_ms=end, on_page=on_page)
        received += result.received
        inserted += result.inserted
        unchanged += result.unchanged
        replaced += result.replaced
        pages += result.pages
    return IngestResult(source.key, received, inserted, unchanged, replaced, pages)
