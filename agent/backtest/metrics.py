"""Performance metrics of a backtest: pure functions over an equity curve and its trades.

Every formula is written out in docs/metrics.md. Conventions: `equity` holds the portfolio value
at the close of each bar of the run (`equity[0]` is the starting value, before any trade);
per-decision arrays (`exposure`, `traded_quote`, costs) hold one value per decision, the
decision at bar k being valued from `equity[k]` to `equity[k + 1]`. Returns are simple returns;
annualisation uses `bars_per_year` (365-day years for crypto by default, see
`agent.market.schema.bars_per_year`). A metric that is undefined (no trades, zero volatility)
is NaN; `as_dict` turns NaN into None and infinity into the string "inf" for JSON.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

POSITION_THRESHOLD = 0.005
"""Exposure above which the portfolio counts as in the market (0.5 %; dust below it)."""
FULLY_INVESTED = 0.95
OVERTRADING_SWAP_RATE = 0.2
OVERTRADING_COST_SHARE = 0.1


@dataclass(frozen=True)
class RoundTrip:
    """One trade: from leaving cash (exposure above the threshold) until back in cash.

    Attributes:
        entry: decision index of the entering trade.
        exit: decision index of the exiting trade, or None if still open at the end.
        entry_equity: portfolio value just before the entering trade.
        exit_equity: value just after the exiting trade (or at the final close if open).
    """

    entry: int
    exit: int | None
    entry_equity: float
    exit_equity: float

    @property
    def pnl(self) -> float:
        return self.exit_equity - self.entry_equity

    @property
    def return_(self) -> float:
        return self.exit_equity / self.entry_equity - 1.0


@dataclass(frozen=True)
class Metrics:
    """The standard metrics of one backtest; see docs/metrics.md for each formula."""

    bars: int
    initial_equity: float
    final_equity: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_days: float
    trades: int
    closed_trades: int
    win_rate: float
    profit_factor: float
    expectancy: float
    sqn: float
    exposure_time: float
    turnover: float
    turnover_annual: float
    swaps: int
    fees_quote: float
    impact_quote: float
    gas_quote: float
    costs_quote: float

    def as_dict(self) -> dict[str, float | int | str | None]:
        """Return the metrics as JSON-ready values (NaN -> None, infinity -> "inf")."""
        return {key: json_number(value) for key, value in asdict(self).items()}


def json_number(value: float | int) -> float | int | str | None:
    """Return a number JSON can hold: NaN becomes None, +-infinity the string "inf"/"-inf"."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    return value


# --- returns and risk -------------------------------------------------------------------


def bar_returns(equity: np.ndarray) -> np.ndarray:
    """Return the simple return of each bar: equity[i + 1] / equity[i] - 1."""
    equity = np.asarray(equity, dtype="float64")
    return equity[1:] / equity[:-1] - 1.0


def total_return(equity: np.ndarray) -> float:
    """Return final / initial - 1."""
    return float(equity[-1] / equity[0] - 1.0)


def cagr(equity: np.ndarray, bars_per_year: float) -> float:
    """Return the compound annual growth rate over len(equity) - 1 bars."""
    periods = len(equity) - 1
    if periods < 1 or equity[-1] <= 0:
        return -1.0 if periods >= 1 else math.nan
    return float((equity[-1] / equity[0]) ** (bars_per_year / periods) - 1.0)


def annual_volatility(returns: np.ndarray, bars_per_year: float) -> float:
    """Return the sample standard deviation of bar returns times sqrt(bars_per_year)."""
    if len(returns) < 2:
        return math.nan
    return float(np.std(returns, ddof=1) * math.sqrt(bars_per_year))


def sharpe_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Return mean / sample std of bar returns times sqrt(bars_per_year) (risk-free rate 0)."""
    if len(returns) < 2:
        return math.nan
    std = float(np.std(returns, ddof=1))
    if std == 0.0:
        return math.nan
    return float(np.mean(returns) / std * math.sqrt(bars_per_year))


def sortino_ratio(returns: np.ndarray, bars_per_year: float) -> float:
    """Return mean / downside deviation of bar returns times sqrt(bars_per_year).

    The downside deviation is sqrt(mean(min(r, 0)^2)) over all bars (target return 0).
    """
    if len(returns) < 1:
        return math.nan
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    if downside == 0.0:
        return math.inf if float(np.mean(returns)) > 0 else math.nan
    return float(np.mean(returns) / downside * math.sqrt(bars_per_year))


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Return equity / running peak - 1 at every bar (0 at a new high, negative below)."""
    equity = np.asarray(equity, dtype="float64")
    return equity / np.maximum.accumulate(equity) - 1.0


def max_drawdown(equity: np.ndarray) -> float:
    """Return the largest fall from a running peak, as a positive fraction (0.25 = 25 %)."""
    return max(0.0, float(-np.min(drawdown(equity))))


def max_drawdown_duration(equity: np.ndarray) -> int:
    """Return the longest time under water in bars: from a peak until equity regains it.

    A drawdown still open at the end counts up to the last bar.
    """
    values = np.asarray(equity, dtype="float64").tolist()
    longest = 0
    peak_value, peak_at = values[0], 0
    for i, value in enumerate(values):
        if value >= peak_value:
            if i - peak_at > 1:  # at least one bar under water between the two peaks
                longest = max(longest, i - peak_at)
            peak_value, peak_at = value, i
    return max(longest, len(values) - 1 - peak_at)


def calmar_ratio(equity: np.ndarray, bars_per_year: float) -> float:
    """Return CAGR / maximum drawdown (NaN without a drawdown)."""
    mdd = max_drawdown(equity)
    return math.nan if mdd == 0.0 else cagr(equity, bars_per_year) / mdd


# --- trades ------------------------------------------------------------------------------


def round_trips(
    exposure: np.ndarray,
    equity: np.ndarray,
    costs_quote: np.ndarray,
    threshold: float = POSITION_THRESHOLD,
) -> list[RoundTrip]:
    """Split a run into trades: each stretch of decisions that leaves the portfolio invested.

    Args:
        exposure: exposure right after each decision's trade.
        equity: value at each close (one more than decisions).
        costs_quote: fee + impact + gas of each decision's trade.
        threshold: exposure above which the portfolio counts as invested.
    """
    invested = np.asarray(exposure) > threshold
    trips: list[RoundTrip] = []
    entry: int | None = None
    for k, inside in enumerate(invested.tolist()):
        if inside and entry is None:
            entry = k
        elif not inside and entry is not None:
            exit_value = float(equity[k] - costs_quote[k])
            trips.append(RoundTrip(entry, k, float(equity[entry]), exit_value))
            entry = None
    if entry is not None:
        trips.append(RoundTrip(entry, None, float(equity[entry]), float(equity[-1])))
    return trips


def win_rate(trade_returns: np.ndarray) -> float:
    """Return the fraction of trades with a positive result."""
    return float(np.mean(trade_returns > 0)) if len(trade_returns) else math.nan


def profit_factor(trade_pnls: np.ndarray) -> float:
    """Return gross profit / gross loss of the trades (infinite without a loss)."""
    if not len(trade_pnls):
        return math.nan
    profit = float(np.sum(trade_pnls[trade_pnls > 0]))
    loss = -float(np.sum(trade_pnls[trade_pnls < 0]))
    if loss == 0.0:
        return math.inf if profit > 0 else math.nan
    return profit / loss


def expectancy(trade_returns: np.ndarray) -> float:
    """Return the mean return per trade."""
    return float(np.mean(trade_returns)) if len(trade_returns) else math.nan


def sqn(trade_returns: np.ndarray) -> float:
    """Return Van Tharp's system quality number: sqrt(N) * mean / sample std of trade returns."""
    if len(trade_returns) < 2:
        return math.nan
    std = float(np.std(trade_returns, ddof=1))
    if std == 0.0:
        return math.nan
    return math.sqrt(len(trade_returns)) * float(np.mean(trade_returns)) / std


def exposure_time(exposure: np.ndarray, threshold: float = POSITION_THRESHOLD) -> float:
    """Return the fraction of decisions after which the portfolio is invested."""
    return float(np.mean(np.asarray(exposure) > threshold)) if len(exposure) else math.nan


def turnover(traded_quote: np.ndarray, equity: np.ndarray) -> float:
    """Return the value traded over the run as a multiple of the mean portfolio value."""
    return float(np.sum(traded_quote) / np.mean(equity))


# --- everything at once -----------------------------------------------------------------


def compute_metrics(
    equity: np.ndarray,
    exposure: np.ndarray,
    traded_quote: np.ndarray,
    fee_quote: np.ndarray,
    impact_quote: np.ndarray,
    gas_quote: np.ndarray,
    swaps: int,
    bars_per_year: float,
    bar_days: float,
) -> Metrics:
    """Compute every metric of one run.

    Args:
        equity: value at each close, one more entry than decisions.
        exposure: exposure right after each decision's trade.
        traded_quote: market value of each decision's trade (0 when nothing traded).
        fee_quote: pool fee of each decision's trade, in quote currency.
        impact_quote: price impact of each decision's trade, in quote currency.
        gas_quote: gas of each decision's trade, in quote currency.
        swaps: number of executed swaps.
        bars_per_year: bars in a year of the run's timeframe.
        bar_days: length of one bar in days (for the drawdown duration).
    """
    equity = np.asarray(equity, dtype="float64")
    returns = bar_returns(equity)
    costs = np.asarray(fee_quote) + np.asarray(impact_quote) + np.asarray(gas_quote)
    trips = round_trips(exposure, equity, costs)
    trip_returns = np.array([t.return_ for t in trips], dtype="float64")
    trip_pnls = np.array([t.pnl for t in trips], dtype="float64")
    periods = len(equity) - 1
    turn = turnover(traded_quote, equity) if periods else 0.0
    mdd_bars = max_drawdown_duration(equity)
    return Metrics(
        bars=periods,
        initial_equity=float(equity[0]),
        final_equity=float(equity[-1]),
        total_return=total_return(equity),
        cagr=cagr(equity, bars_per_year),
        annual_volatility=annual_volatility(returns, bars_per_year),
        sharpe=sharpe_ratio(returns, bars_per_year),
        sortino=sortino_ratio(returns, bars_per_year),
        calmar=calmar_ratio(equity, bars_per_year),
        max_drawdown=max_drawdown(equity),
        max_drawdown_bars=mdd_bars,
        max_drawdown_days=mdd_bars * bar_days,
        trades=len(trips),
        closed_trades=sum(1 for t in trips if t.exit is not None),
        win_rate=win_rate(trip_returns),
        profit_factor=profit_factor(trip_pnls),
        expectancy=expectancy(trip_returns),
        sqn=sqn(trip_returns),
        exposure_time=exposure_time(exposure),
        turnover=turn,
        turnover_annual=turn * bars_per_year / periods if periods else math.nan,
        swaps=int(swaps),
        fees_quote=float(np.sum(fee_quote)),
        impact_quote=float(np.sum(impact_quote)),
        gas_quote=float(np.sum(gas_quote)),
        costs_quote=float(np.sum(costs)),
    )


def degenerate_warnings(metrics: Metrics, exposure: np.ndarray) -> list[str]:
    """Return warnings about an agent that does not really trade (see docs/metrics.md).

    - never trades: no swap in the whole run;
    - always fully invested: exposure >= 95 % after at least 95 % of the decisions;
    - overtrades: a swap on more than 20 % of the bars, or costs above 10 % of the start value.
    """
    warnings: list[str] = []
    if metrics.swaps == 0:
        warnings.append("never trades: no swap in the whole run")
    elif len(exposure) and float(np.mean(np.asarray(exposure) >= FULLY_INVESTED)) >= 0.95:
        warnings.append("always fully invested: behaves like buy-and-hold")
    if metrics.bars and metrics.swaps > OVERTRADING_SWAP_RATE * metrics.bars:
        warnings.append(
            f"overtrades: {metrics.swaps} swaps in {metrics.bars} bars "
            f"(more than {OVERTRADING_SWAP_RATE:.0%} of bars)"
        )
    elif metrics.costs_quote > OVERTRADING_COST_SHARE * metrics.initial_equity:
        warnings.append(
            f"overtrades: costs of {metrics.costs_quote:,.2f} exceed "
            f"{OVERTRADING_COST_SHARE:.0%} of the starting value"
        )
    return warnings


def signal_correlation(values: np.ndarray, mask: np.ndarray, min_bars: int = 3) -> np.ndarray:
    """Return the Pearson correlation of every pair of signal columns (NaN if undefined).

    Each pair uses the bars where both signals are available; a pair with fewer than
    `min_bars` such bars, or a constant signal, gives NaN.
    """
    values = np.asarray(values, dtype="float64")
    mask = np.asarray(mask, dtype=bool)
    n = values.shape[1]
    out = np.full((n, n), math.nan)
    for i in range(n):
        for j in range(i, n):
            both = mask[:, i] & mask[:, j]
            if int(both.sum()) < min_bars:
                continue
            x, y = values[both, i], values[both, j]
            if float(np.std(x)) == 0.0 or float(np.std(y)) == 0.0:
                continue
            out[i, j] = out[j, i] = float(np.corrcoef(x, y)[0, 1])
    return out
