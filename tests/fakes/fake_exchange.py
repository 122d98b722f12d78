"""A local fake of Binance's public spot REST API, for offline tests that drive real ccxt code.

`FakeExchange` is a threaded `http.server` on 127.0.0.1 (a free port) that answers the requests
ccxt's `binance` client makes to load markets and page through klines, in Binance's own wire
format, from a deterministic candle set. Its clock (`now_ms`) is set by the test, and the candle
open at that instant is served "still forming", as Binance does. Scripted faults (HTTP 429/418/5xx
with Binance error bodies, a dropped connection, a response slower than the client's timeout, a
malformed body, a stale page) apply to the next matching requests. Every request is recorded.

    with FakeExchange(now_ms=...) as fake:
        settings = fake.settings(page_limit=1000)   # urls and options point ccxt at the fake
        fake.fail("429")                             # the next klines request gets HTTP 429
        ...
        assert len(fake.klines_requests()) == 4
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pandas as pd

from agent.config import ExchangeSettings
from agent.market.schema import CANDLE_COLUMNS, parse_time_ms, timeframe_ms

KLINES_PATH = "/api/v3/klines"
EXCHANGE_INFO_PATH = "/api/v3/exchangeInfo"
DEFAULT_START_MS = parse_time_ms("2024-01-01T00:00:00Z")
DEFAULT_NOW_MS = DEFAULT_START_MS + 2_500 * 3_600_000 + 30 * 60_000  # 2,500 closed 1h bars
FAULT_KINDS = ("429", "418", "500", "502", "503", "drop", "slow", "malformed", "stale")

# The interval strings Binance accepts (the fake serves those with a fixed length).
INTERVALS = ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d")

_ERROR_BODIES: dict[str, tuple[int, dict[str, Any] | str]] = {
    "429": (429, {"code": -1003, "msg": "Too many requests; current limit is 6000 weight."}),
    "418": (418, {"code": -1003, "msg": "Way too many requests; IP banned until 1700000000000."}),
    "500": (500, "<html><body>500 Internal Server Error</body></html>"),
    "502": (502, "<html><body>502 Bad Gateway</body></html>"),
    "503": (503, {"code": -1001, "msg": "Internal error; unable to process your request."}),
}


@dataclass(frozen=True)
class Symbol:
    """A spot market the fake lists: Binance id (`BTCUSDT`), base and quote asset."""

    id: str
    base: str
    quote: str
    price: float = 100.0


DEFAULT_SYMBOLS = (
    Symbol("BTCUSDT", "BTC", "USDT", 40_000.0),
    Symbol("ETHUSDT", "ETH", "USDT", 2_000.0),
)


@dataclass(frozen=True)
class Request:
    """One request the fake received (faulted or not)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Fault:
    """A scripted failure for `times` requests to `path` (None: forever), after `skip` pass."""

    kind: str
    path: str = KLINES_PATH
    times: int | None = 1
    delay_s: float = 2.0
    skip: int = 0


@dataclass
class _State:
    now_ms: int
    start_ms: int
    symbols: dict[str, Symbol]
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _wave(i: int, seed: int) -> float:
    """A deterministic pseudo-random number in [-1, 1] for bar index `i`."""
    x = math.sin((i + 1) * 12.9898 + seed * 78.233) * 43_758.5453
    return 2.0 * (x - math.floor(x)) - 1.0


def candle_at(symbol: Symbol, interval_ms: int, open_ms: int, now_ms: int) -> list[Any]:
    """Return the Binance kline for the bar opening at `open_ms`, as the fake serves it.

    Prices are a deterministic function of the bar index, so any page of any interval is
    reproducible. A bar still open at `now_ms` is served as it stands (partial close, volume).
    """
    i = open_ms // interval_ms
    seed = sum(map(ord, symbol.id))

    def level(k: int) -> float:
        return symbol.price * (1.0 + 0.15 * math.sin(k / 97.0) + 0.01 * _wave(k, seed))

    o, c = level(i - 1), level(i)
    volume = 10.0 + 5.0 * (1.0 + _wave(i, seed + 1))
    close_ms = open_ms + interval_ms - 1
    if open_ms + interval_ms > now_ms:  # still forming: only part of the bar has traded
        fraction = (now_ms - open_ms) / interval_ms
        c = o + (c - o) * fraction
        volume *= fraction
    spread = 0.002 * symbol.price * (1.0 + _wave(i, seed + 2))
    h, lo = max(o, c) + spread, min(o, c) - spread
    return [
        open_ms,
        f"{o:.8f}",
        f"{h:.8f}",
        f"{lo:.8f}",
        f"{c:.8f}",
        f"{volume:.8f}",
        close_ms,
        f"{volume * c:.8f}",
        100,
        f"{volume / 2:.8f}",
        f"{volume * c / 2:.8f}",
        "0",
    ]


def _market_info(symbol: Symbol) -> dict[str, Any]:
    return {
        "symbol": symbol.id,
        "status": "TRADING",
        "baseAsset": symbol.base,
        "baseAssetPrecision": 8,
        "quoteAsset": symbol.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": True,
        "cancelReplaceAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": "0.01000000",
                "maxPrice": "1000000.00000000",
                "tickSize": "0.01000000",
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": "0.00001000",
                "maxQty": "9000.00000000",
                "stepSize": "0.00001000",
            },
            {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True},
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": "0.00000000",
                "maxQty": "100.00000000",
                "stepSize": "0.00000000",
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: a dropped socket is unambiguous

    def log_message(self, format: str, *args: Any) -> None:  # the tests stay quiet
        pass

    def do_GET(self) -> None:
        state = self.server.state
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        with state.lock:
            state.requests.append(
                Request("GET", parts.path, query, {k.lower(): v for k, v in self.headers.items()})
            )
            fault = self._take_fault(parts.path)
        if fault is not None and self._apply(fault, parts.path, query):
            return
        self._route(parts.path, query)

    def _take_fault(self, path: str) -> Fault | None:
        faults = self.server.state.faults
        if not faults or faults[0].path != path:
            return None
        fault = faults[0]
        if fault.skip > 0:
            fault.skip -= 1
            return None
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                faults.popleft()
        return fault

    def _apply(self, fault: Fault, path: str, query: dict[str, str]) -> bool:
        """Act out a fault; return True when the request is fully handled."""
        if fault.kind in _ERROR_BODIES:
            status, body = _ERROR_BODIES[fault.kind]
            self._send(status, body)
            return True
        if fault.kind == "drop":
            self.close_connection = True
            self.wfile.flush()
            self.connection.close()
            return True
        if fault.kind == "slow":
            self.server.state.stopping.wait(fault.delay_s)
            return False  # then answer normally, long after the client gave up
        if fault.kind == "malformed":
            self._send_raw(200, b'[[1704067200000,"42000.00000000","42100.0', "application/json")
            return True
        if fault.kind == "stale":  # the exchange ignores startTime: always the first page
            self._route(path, {**query, "startTime": str(self.server.state.start_ms)})
            return True
        raise AssertionError(f"unknown fault kind {fault.kind!r}")

    def _route(self, path: str, query: dict[str, str]) -> None:
        state = self.server.state
        if path == EXCHANGE_INFO_PATH:
            self._send(200, self._exchange_info())
        elif path == KLINES_PATH:
            self._klines(query)
        elif path in ("/fapi/v1/exchangeInfo", "/dapi/v1/exchangeInfo"):
            self._send(200, {"timezone": "UTC", "serverTime": state.now_ms, "symbols": []})
        elif path == "/api/v3/time":
            self._send(200, {"serverTime": state.now_ms})
        elif path == "/api/v3/ping":
            self._send(200, {})
        elif path.startswith("/sapi/v1/") and "x-mbx-apikey" in self.headers:
            self._send(200, [])  # signed wallet/margin lists: nothing to report
        else:
            self._send(404, {"code": -1, "msg": f"fake exchange: no route for {path}"})

    def _exchange_info(self) -> dict[str, Any]:
        state = self.server.state
        return {
            "timezone": "UTC",
            "serverTime": state.now_ms,
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
            ],
            "exchangeFilters": [],
            "symbols": [_market_info(s) for s in state.symbols.values()],
        }

    def _klines(self, query: dict[str, str]) -> None:
        state = self.server.state
        symbol = state.symbols.get(query.get("symbol", ""))
        if symbol is None:
            self._send(400, {"code": -1121, "msg": "Invalid symbol."})
            return
        interval = query.get("interval", "")
        if interval not in INTERVALS:
            self._send(400, {"code": -1120, "msg": "Invalid interval."})
            return
        try:
            limit = int(query.get("limit", "500"))
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
        except ValueError:
            self._send(400, {"code": -1100, "msg": "Illegal characters found in a parameter."})
            return
        if not 1 <= limit <= 1000:
            self._send(400, {"code": -1130, "msg": "Invalid data sent for a parameter."})
            return
        self._send(200, klines(symbol, interval, state.start_ms, state.now_ms, start, end, limit))

    def _send(self, status: int, body: Any) -> None:
        if isinstance(body, str):
            self._send_raw(status, body.encode(), "text/html")
        else:
            self._send_raw(status, json.dumps(body).encode(), "application/json;charset=UTF-8")

    def _send_raw(self, status: int, payload: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to tell it


def klines(
    symbol: Symbol,
    interval: str,
    listing_ms: int,
    now_ms: int,
    start_ms: int | None,
    end_ms: int | None,
    limit: int,
) -> list[list[Any]]:
    """Answer a klines query as Binance does: bars open in [start, end], at most `limit`.

    Bars run from the listing to the one open at `now_ms` (still forming). Without a start,
    the latest `limit` bars up to `end` are returned.
    """
    step = timeframe_ms(interval)
    first = -(-listing_ms // step) * step
    last = (now_ms // step) * step  # the bar still forming
    hi = last if end_ms is None else min(last, (end_ms // step) * step)
    if start_ms is None:
        lo = max(first, hi - (limit - 1) * step)
    else:
        lo = max(first, -(-start_ms // step) * step)
        hi = min(hi, lo + (limit - 1) * step)
    return [candle_at(symbol, step, t, now_ms) for t in range(lo, hi + 1, step)]


@functools.cache
def _binance_api_urls() -> dict[str, str]:
    import ccxt

    return dict(ccxt.binance().describe()["urls"]["api"])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: _State


class FakeExchange:
    """A fake Binance spot API on 127.0.0.1; use as a context manager (or start/stop).

    Args:
        now_ms: the fake's clock: the bar open at this instant is still forming.
        start_ms: the listing time: the first bar served (per interval, rounded up).
        symbols: the spot markets listed (default BTC/USDT and ETH/USDT).
    """

    def __init__(
        self,
        *,
        now_ms: int = DEFAULT_NOW_MS,
        start_ms: int = DEFAULT_START_MS,
        symbols: tuple[Symbol, ...] = DEFAULT_SYMBOLS,
    ) -> None:
        self.state = _State(now_ms=now_ms, start_ms=start_ms, symbols={s.id: s for s in symbols})
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeExchange:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.state = self.state
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name="fake-exchange"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        self.state.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake exchange is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- the clock and the data -----------------------------------------------------------
    @property
    def now_ms(self) -> int:
        return self.state.now_ms

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        self.state.now_ms = value

    def now(self) -> int:
        """Return the fake's clock (pass as `now_ms=fake.now` to the code under test)."""
        return self.state.now_ms

    def candles(
        self, symbol: str = "BTCUSDT", interval: str = "1h", *, closed_only: bool = True
    ) -> pd.DataFrame:
        """Return every bar the fake serves for a market, as a candle frame."""
        market = self.state.symbols[symbol]
        step = timeframe_ms(interval)
        first = -(-self.state.start_ms // step) * step
        last = (self.state.now_ms // step) * step
        if closed_only:
            last -= step
        rows = [
            candle_at(market, step, t, self.state.now_ms)[:6] for t in range(first, last + 1, step)
        ]
        frame = pd.DataFrame(rows, columns=list(CANDLE_COLUMNS))
        return frame.astype({"open_time": "int64", **{c: "float64" for c in CANDLE_COLUMNS[1:]}})

    # --- faults and the request log -------------------------------------------------------
    def fail(
        self,
        kind: str,
        *,
        times: int | None = 1,
        skip: int = 0,
        path: str = KLINES_PATH,
        delay_s: float = 2.0,
    ) -> None:
        """Script a fault for `times` requests to `path` (None: every one from then on).

        The first `skip` matching requests are answered normally (fail on the second page).
        Kinds: "429" / "418" (Binance rate-limit bodies), "500" / "502" / "503", "drop" (close
        the socket without a response), "slow" (answer after `delay_s`), "malformed" (a
        truncated JSON body), "stale" (ignore startTime and serve the first page again).
        Faults queue up in order; only the head of the queue applies to a request.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self.state.lock:
            self.state.faults.append(Fault(kind, path, times, delay_s, skip))

    def clear_faults(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    @property
    def requests(self) -> list[Request]:
        with self.state.lock:
            return list(self.state.requests)

    def klines_requests(self) -> list[Request]:
        """Return the klines requests received so far, oldest first."""
        return [r for r in self.requests if r.path == KLINES_PATH]

    def klines_starts(self) -> list[int | None]:
        """Return the startTime of every klines request so far (None where it had none)."""
        return [
            int(r.query["startTime"]) if "startTime" in r.query else None
            for r in self.klines_requests()
        ]

    def reset_requests(self) -> None:
        with self.state.lock:
            self.state.requests.clear()

    # --- pointing ccxt at the fake --------------------------------------------------------
    def api_urls(self) -> dict[str, str]:
        """Return ccxt binance's `urls['api']` with every host replaced by the fake."""
        return {name: self.url + urlsplit(url).path for name, url in _binance_api_urls().items()}

    def settings(self, **overrides: Any) -> ExchangeSettings:
        """Return exchange settings that point ccxt's binance client at the fake, test-fast.

        Markets load from the spot endpoint only; rate limiting is off, the timeout short
        and the backoff zero (tests also inject a no-op sleep).
        """
        values: dict[str, Any] = {
            "id": "binance",
            "urls": {"api": self.api_urls()},
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchMargins": False},
            "rate_limit": False,
            "timeout_ms": 2_000,
            "max_tries": 3,
            "backoff_s": 0.0,
        }
        values.update(overrides)
        return ExchangeSettings(**values)
