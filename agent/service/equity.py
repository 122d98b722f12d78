"""The live model's equity since the service started, against buy-and-hold and flat.

One computation for everything that reports it (`agora demo`, the dashboard's live page): the
traded policy's value after each decision (at that bar's close, every cost paid) from the
service's intents; buy-and-hold through the one rollout over the same bars with the same
costs; flat keeps the starting portfolio. Figures are printed with `format_value`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agent.config import Settings
from agent.service import ledger
from agent.store import Store

CURVE_POINTS = 2_000
"""At most this many points per curve (an even stride through the decisions, the last kept)."""


def format_value(value: float | None) -> str:
    """Return a portfolio value in quote currency as `agora status` prints it (`10012.34`)."""
    return "n/a" if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class EquityComparison:
    """The three portfolios since the service's first decision.

    Attributes:
        market: the series the service trades.
        initial: the starting portfolio value (quote currency); flat stays at it.
        decisions: decided bars.
        times_ms: bar open times of the curves' points (at most `CURVE_POINTS`).
        live: the traded policy's value after each of those bars.
        hold: buy-and-hold's value after each of those bars (None where the rollout has none).
        live_value: the traded policy's value after its last decision.
        hold_value: buy-and-hold's value over the same bars (None: fewer than two bars).
        flat_value: flat's value (`initial`).
    """

    market: str
    initial: float
    decisions: int
    times_ms: tuple[int, ...]
    live: tuple[float, ...]
    hold: tuple[float | None, ...]
    live_value: float | None
    hold_value: float | None
    flat_value: float

    @property
    def live_return(self) -> float | None:
        return None if self.live_value is None else self.live_value / self.initial - 1.0

    @property
    def hold_return(self) -> float | None:
        return None if self.hold_value is None else self.hold_value / self.initial - 1.0

    def figures(self) -> dict[str, str]:
        """Return the final values as printed (`format_value`): live, hold, flat."""
        return {
            "live": format_value(self.live_value),
            "hold": format_value(self.hold_value),
            "flat": format_value(self.flat_value),
        }


def _curve(store: Store, market: str, points: int) -> tuple[list[int], list[float], int]:
    """Return (bar times, values) of the decided bars, an even stride of them, and the count.

    Read from the values that triggers copy out of each tick's outcome as it is written
    (`service_tick_values`), so a long service's outcomes are not parsed.
    """
    import numpy as np

    rows = np.fromiter(
        store.db.execute(
            "SELECT bar_time_ms, value_quote FROM service_tick_values WHERE market = ? "
            "ORDER BY bar_time_ms",
            [market],
        ),
        dtype=[("time", "int64"), ("value", "float64")],
    )
    if not len(rows):
        return [], [], 0
    stride = max(1, -(-len(rows) // points))
    chosen = rows[::stride]
    if chosen[-1]["time"] != rows[-1]["time"]:
        chosen = np.concatenate([chosen, rows[-1:]])
    return chosen["time"].tolist(), chosen["value"].tolist(), len(rows)


def equity_since_start(store: Store, settings: Settings, *, points: int = CURVE_POINTS) -> Any:
    """Return the `EquityComparison` of the service in `store`, or None before its genesis."""
    genesis = ledger.get_state(store, "genesis")
    if genesis is None:
        return None
    market = str(genesis["market"])
    initial = int(genesis["initial_quote"]) / 10**6
    times, live, total = _curve(store, market, max(2, points))
    last = ledger.last_decision(store, market)
    live_value = None if last is None or last.outcome is None else float(last.outcome.value_quote)
    hold_by_time: dict[int, float] = {}
    hold_value = None
    if last is not None:
        hold_by_time, hold_value = _hold(store, settings, int(genesis["after_ms"]), last, times)
    return EquityComparison(
        market=market,
        initial=initial,
        decisions=total,
        times_ms=tuple(times),
        live=tuple(live),
        hold=tuple(hold_by_time.get(t) for t in times),
        live_value=live_value,
        hold_value=hold_value,
        flat_value=initial,
    )


def _hold(
    store: Store, settings: Settings, after_ms: int, last: ledger.TickRow, at_ms: list[int]
) -> tuple[dict[int, float], float | None]:
    """Return buy-and-hold's value at the bar times `at_ms` (those it has), and its final value."""
    import numpy as np

    from agent.env.rollout import buy_and_hold, log_return, rollout
    from agent.env.trading_env import EnvConfig
    from agent.market.schema import SeriesKey
    from agent.plugins.market_data import build_market_data

    source, rest = last.market.split(":", 1)
    symbol, timeframe = rest.rsplit(":", 1)
    candles = store.read_candles(SeriesKey(source, symbol, timeframe))
    times = candles["open_time"].to_numpy(dtype="int64")
    first = int((times <= after_ms).sum())
    end = int((times <= last.bar_time_ms).sum()) - 1
    if end <= first:
        return {}, None
    data, _ = build_market_data(candles.iloc[: end + 1], [])
    costs = EnvConfig.from_settings(settings)
    hold = rollout(data, buy_and_hold(data), costs, first, end)
    initial = float(hold.equity[0])
    final = initial * math.exp(log_return(hold))
    values = hold.equity[1:]  # after the bars times[first:first + len(values)]
    wanted = np.asarray(at_ms, dtype="int64")
    at = np.searchsorted(times, wanted)
    found = (at < len(times)) & (times[np.minimum(at, len(times) - 1)] == wanted)
    found &= (at >= first) & (at < first + len(values))
    by_time = {
        int(t): float(values[i - first]) for t, i in zip(wanted[found], at[found], strict=True)
    }
    return by_time, final
