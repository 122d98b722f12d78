"""A seeded synthetic market with realistic stylised facts and a planted, known edge.

The generator draws log returns `r_t = mu_t + sqrt(h_t) * e_t` where `mu_t` is the drift of a
three-state Markov regime (bull, bear, calm), `h_t` is a GARCH(1,1) conditional variance whose
long-run level is `annual_volatility` scaled to one bar, and `e_t` is a unit-variance innovation
built from Student-t noise (fat tails). Volume rises with the conditional volatility and with
the size of the bar's move. Intrabar highs and lows extend beyond the open and close by random
wicks that scale with the conditional volatility, so every candle is OHLC-consistent.

Planted component and its timing. A hidden AR(1) series `z` (persistence
`phi = 0.5 ** (1 / half_life_bars)`, unit stationary variance) drives part of the next bar's
innovation::

    e_{t+1} = ic * z_t + sqrt(1 - ic**2) * u_{t+1}        (u: unit-variance Student-t)

`planted[t] = z_t` is known at the close of bar t (it is drawn before bar t+1 opens), carries no
information about bar t's own innovation, and correlates with bar t+1's return at about
`information_coefficient` (slightly less on raw returns, because volatility varies: the
correlation is `ic * E[sqrt(h)] / sqrt(E[h] + Var(mu))`). Through its persistence it also
predicts later bars, with the correlation decaying as `ic * phi ** (k - 1)` at horizon k. With
`planted.enabled` false the returns contain no planted part; `planted` is still the same `z`
series (useful as a placebo signal) and is independent of the returns.

Determinism. Each ingredient draws from its own child of `numpy.random.default_rng(seed)`, so
the same settings give bit-identical output, and a run of n bars is the exact prefix of a
longer run with the same settings (growing `bars` never conflicts with stored candles).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from agent.config import SyntheticSettings
from agent.errors import SourceError
from agent.market.schema import SeriesKey, bars_per_year, parse_time_ms, timeframe_ms
from agent.market.sources import PAGE_ROWS, IngestResult, ingest
from agent.store import Store

SOURCE_NAME = "synthetic"
PLANTED_SERIES_NAME = "planted"

REGIME_BEAR, REGIME_CALM, REGIME_BULL = -1, 0, 1
_REGIME_SIGNS = np.array([REGIME_CALM, REGIME_BULL, REGIME_BEAR], dtype=np.int8)
"""Drift sign of each Markov state 0, 1, 2 (calm, bull, bear)."""

WICK_SCALE = 0.5
"""Mean intrabar wick beyond max(open, close) / min(open, close), in conditional std units."""
VOLUME_NOISE_SIGMA = 0.4
"""Log-std of the multiplicative lognormal noise on volume (its mean is 1)."""
MAX_NOISE_SD = 30.0
"""Clip of the unit-variance Student-t noise; only bites when tail_dof is close to 2."""
MAX_VARIANCE_RATIO = 100.0
"""Cap of the conditional variance, as a multiple of the long-run one (10x the volatility):
keeps near-degenerate settings (tail_dof near 2 with a large garch_alpha) from exploding."""

_STREAMS: tuple[str, ...] = (
    "planted",
    "innovation",
    "regime_start",
    "regime_switch",
    "regime_target",
    "wick_high",
    "wick_low",
    "volume",
)
"""Order of the child generators; append new ones at the end to keep old outputs identical."""


@dataclass(frozen=True, eq=False)
class SyntheticMarket:
    """One generated market: the public candles and the hidden truth behind them.

    Attributes:
        candles: candle frame (`open_time` int64 ms UTC, then open, high, low, close, volume).
        planted: the hidden predictive series; `planted[t]` is known at the close of bar t and
            predicts the log return of bar t+1.
        regimes: drift sign of each bar's regime (-1 bear, 0 calm, +1 bull), int8.
        volatility: conditional standard deviation of each bar's log return (GARCH), float64.
    """

    candles: pd.DataFrame
    planted: np.ndarray
    regimes: np.ndarray
    volatility: np.ndarray

    @property
    def log_returns(self) -> np.ndarray:
        """Return each bar's log return `log(close / open)`, as observed in the candles."""
        close = self.candles["close"].to_numpy(dtype="float64")
        open_ = self.candles["open"].to_numpy(dtype="float64")
        return np.log(close) - np.log(open_)

    def realised_ic(self, horizon: int = 1) -> float:
        """Return the measured correlation of `planted[t]` with the log return of bar t+horizon."""
        return forward_ic(self.planted, self.log_returns, horizon)


def forward_ic(signal: np.ndarray, log_returns: np.ndarray, horizon: int = 1) -> float:
    """Return the Pearson correlation of `signal[t]` with `log_returns[t + horizon]`.

    Args:
        signal: one value per bar, known at the bar's close.
        log_returns: one log return per bar, aligned with `signal`.
        horizon: how many bars ahead the return is taken (0 = the same bar).
    """
    signal = np.asarray(signal, dtype="float64")
    log_returns = np.asarray(log_returns, dtype="float64")
    if signal.shape != log_returns.shape or signal.ndim != 1:
        raise ValueError(
            f"signal and log_returns must be 1-D of equal length "
            f"(got {signal.shape} and {log_returns.shape})"
        )
    if horizon < 0 or signal.size - horizon < 2:
        raise ValueError(f"horizon {horizon} leaves fewer than 2 pairs in {signal.size} bars")
    x = signal[: signal.size - horizon]
    y = log_returns[horizon:]
    return float(np.corrcoef(x, y)[0, 1])


def generate(settings: SyntheticSettings, timeframe: str) -> SyntheticMarket:
    """Generate `settings.bars` candles of `timeframe` and the planted series behind them.

    Pure and deterministic: the same settings and timeframe give bit-identical output.

    Args:
        settings: the generator's parameters (see `SyntheticSettings`).
        timeframe: ccxt-style bar length ("1h"); sets the per-bar scale of volatility and drift
            and the spacing of `open_time`.

    Raises:
        ConfigError: the timeframe is not valid.
        SourceError: the parameters drive prices outside the range of float64.
    """
    n = settings.bars
    step_ms = timeframe_ms(timeframe)
    per_year = bars_per_year(timeframe)
    rngs = dict(
        zip(_STREAMS, np.random.default_rng(settings.seed).spawn(len(_STREAMS)), strict=True)
    )

    dof = settings.tail_dof
    noise = rngs["innovation"].standard_t(dof, n) * math.sqrt((dof - 2.0) / dof)
    np.clip(noise, -MAX_NOISE_SD, MAX_NOISE_SD, out=noise)
    planted_shocks = rngs["planted"].standard_normal(n + 1)
    ic = settings.planted.information_coefficient if settings.planted.enabled else 0.0
    phi = 0.5 ** (1.0 / settings.planted.half_life_bars)
    long_run_var = settings.annual_volatility**2 / per_year
    z, innovation, variance = _simulate_path(
        planted_shocks, noise, ic, phi, long_run_var, settings.garch_alpha, settings.garch_beta
    )
    sigma = np.sqrt(variance)

    regimes = _regimes(rngs, n, settings.regime_switch_prob)
    drift = regimes * (settings.regime_drift_annual / per_year)
    shock = sigma * innovation
    log_close = math.log(settings.initial_price) + np.cumsum(drift + shock)

    close = np.exp(log_close)
    open_ = np.concatenate(([settings.initial_price], close[:-1]))
    high = np.maximum(open_, close) * np.exp(sigma * rngs["wick_high"].exponential(WICK_SCALE, n))
    low = np.minimum(open_, close) * np.exp(-sigma * rngs["wick_low"].exponential(WICK_SCALE, n))
    volume = _volume(rngs["volume"], sigma, innovation, math.sqrt(long_run_var), dof)
    volume *= settings.base_volume

    if not (np.all(np.isfinite(high)) and np.all(low > 0.0) and np.all(np.isfinite(volume))):
        raise SourceError(
            f"synthetic market (seed {settings.seed}, {n} bars of {timeframe}, annual_volatility "
            f"{settings.annual_volatility}, regime_drift_annual {settings.regime_drift_annual}) "
            "drives prices outside float64 range; use fewer bars or lower volatility/drift"
        )
    start_ms = parse_time_ms(settings.start, what="market.synthetic.start")
    first = start_ms - start_ms % step_ms
    candles = pd.DataFrame(
        {
            "open_time": first + step_ms * np.arange(n, dtype="int64"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )
    return SyntheticMarket(candles=candles, planted=z, regimes=regimes, volatility=sigma)


def _simulate_path(
    planted_shocks: np.ndarray,
    noise: np.ndarray,
    ic: float,
    phi: float,
    long_run_var: float,
    alpha: float,
    beta: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the AR(1) planted series and the GARCH(1,1) variance recursion bar by bar.

    Returns `z` (planted value at each bar's close), the unit-variance innovations `e` and the
    conditional variances `h` (capped at `MAX_VARIANCE_RATIO` times the long run). The
    recursions are sequential, so they loop over Python floats, which is several times faster
    than indexing numpy scalars.
    """
    shocks = planted_shocks.tolist()
    noise_list = noise.tolist()
    n = len(noise_list)
    keep = math.sqrt(1.0 - ic * ic)
    fresh = math.sqrt(1.0 - phi * phi)
    omega = long_run_var * (1.0 - alpha - beta)
    h_cap = long_run_var * MAX_VARIANCE_RATIO
    z_prev = shocks[0]  # z_{-1}, drawn from the stationary N(0, 1)
    h = long_run_var
    z_out = [0.0] * n
    e_out = [0.0] * n
    h_out = [0.0] * n
    for t in range(n):
        e = ic * z_prev + keep * noise_list[t]
        h_out[t] = h
        e_out[t] = e
        z_prev = phi * z_prev + fresh * shocks[t + 1]
        z_out[t] = z_prev
        h = min(omega + alpha * h * e * e + beta * h, h_cap)
    return np.array(z_out), np.array(e_out), np.array(h_out)


def _regimes(rngs: dict[str, np.random.Generator], n: int, switch_prob: float) -> np.ndarray:
    """Return each bar's drift sign from a 3-state Markov chain that leaves its state with
    probability `switch_prob` per bar, to one of the two other states with equal chance."""
    start = int(rngs["regime_start"].integers(0, 3))
    switches = rngs["regime_switch"].random(n) < switch_prob
    step = np.where(rngs["regime_target"].random(n) < 0.5, 1, 2)
    state = (start + np.cumsum(np.where(switches, step, 0))) % 3
    return _REGIME_SIGNS[state]


def _volume(
    rng: np.random.Generator,
    sigma: np.ndarray,
    innovation: np.ndarray,
    long_run_sigma: float,
    dof: float,
) -> np.ndarray:
    """Return volume in units of `base_volume`: its mean scales with the conditional volatility
    (relative to the long run) and with the bar's absolute standardized move."""
    activity = (sigma / long_run_sigma) * (0.5 + 0.5 * np.abs(innovation) / _mean_abs_t(dof))
    noise = rng.lognormal(-0.5 * VOLUME_NOISE_SIGMA**2, VOLUME_NOISE_SIGMA, sigma.size)
    return activity * noise


def _mean_abs_t(dof: float) -> float:
    """Return E|e| for a Student-t with `dof` degrees of freedom scaled to unit variance."""
    log_ratio = math.lgamma((dof + 1.0) / 2.0) - math.lgamma(dof / 2.0)
    mean_abs_t = 2.0 * math.sqrt(dof) * math.exp(log_ratio) / (math.sqrt(math.pi) * (dof - 1.0))
    return mean_abs_t * math.sqrt((dof - 2.0) / dof)


class SyntheticSource:
    """The synthetic market as a `CandleSource`; generated once, on first use.

    Args:
        settings: the generator's parameters.
        symbol: the symbol the series is stored under ("SYN/USD").
        timeframe: ccxt-style bar length.
    """

    def __init__(self, settings: SyntheticSettings, symbol: str, timeframe: str) -> None:
        timeframe_ms(timeframe)
        self._settings = settings
        self._key = SeriesKey(SOURCE_NAME, symbol, timeframe)

    @property
    def key(self) -> SeriesKey:
        """The stored series this source fills: `synthetic:<symbol>:<timeframe>`."""
        return self._key

    @cached_property
    def market(self) -> SyntheticMarket:
        """The generated market (candles and hidden truth)."""
        return generate(self._settings, self._key.timeframe)

    def pages(self, start_ms: int | None, end_ms: int | None) -> Iterator[pd.DataFrame]:
        """Yield the candles with open times in [start_ms, end_ms], oldest first, in pages of
        `PAGE_ROWS` rows; None leaves that end unbounded."""
        candles = self.market.candles
        times = candles["open_time"].to_numpy()
        lo = 0 if start_ms is None else int(np.searchsorted(times, start_ms, side="left"))
        hi = len(times) if end_ms is None else int(np.searchsorted(times, end_ms, side="right"))
        for at in range(lo, hi, PAGE_ROWS):
            yield candles.iloc[at : min(at + PAGE_ROWS, hi)].reset_index(drop=True)

    def planted_series(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (open_times, values) of the planted series, one value per bar."""
        times = self.market.candles["open_time"].to_numpy(dtype="int64")
        return times, self.market.planted


def synth(
    store: Store,
    settings: SyntheticSettings,
    symbol: str,
    timeframe: str,
    *,
    replace: bool = False,
) -> IngestResult:
    """Generate the synthetic market into `store`, with its planted series (`agora data synth`).

    Idempotent: running it again with the same settings inserts nothing. Candles that differ
    from stored ones (other settings) are refused unless `replace` is set: the whole series is
    compared with the store first, so a refusal writes nothing. The candles are written in
    pages of `PAGE_ROWS` (each page's planted values right after it), each its own short
    transaction, so a running service keeps writing; a failure while writing says which
    candles are stored, and running it again continues.

    Args:
        store: the open database.
        settings: the generator's parameters.
        symbol: the symbol to store the series under.
        timeframe: ccxt-style bar length.
        replace: overwrite stored candles that differ from the generated ones.
    """
    source = SyntheticSource(settings, symbol, timeframe)
    if not replace:
        store.refuse_conflicts(source.key, source.market.candles, page_rows=PAGE_ROWS)
    times, values = source.planted_series()

    def write_planted(page: pd.DataFrame) -> None:
        if page.empty:
            return
        lo, hi = np.searchsorted(times, page["open_time"].to_numpy()[[0, -1]])
        store.write_hidden_series(
            source.key, PLANTED_SERIES_NAME, times[lo : hi + 1], values[lo : hi + 1]
        )

    return ingest(store, source, replace=replace, on_page=write_planted)
