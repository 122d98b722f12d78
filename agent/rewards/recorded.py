"""The live service's market as its agent saw it: reward epochs on the recorded observations.

An epoch of the service must not re-run the policy over signals recomputed from stored candles:
candles rewritten or a plugin changed afterwards would change the payout, and a strategy that
peeks at the future in the history path would be paid for it. `recorded_market` rebuilds the
market from the service's intent log instead (`service_ticks`: each decided bar's observation
and price) and checks every observation it uses against its decision record in the audit trail
(the `decisions` table the on-chain DecisionLog mirrors).

The intent log is read with SQL here: `agent.service` sits above `agent.rewards` in the layers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from agent.audit.record import DecisionRecord, decision_hashes, observation_digest, to_fixed_e9
from agent.env.features import FEATURE_NAMES
from agent.env.spec import ObservationParts, PolicySpec, observation_parts
from agent.env.trading_env import MarketData
from agent.errors import AuditError, DataError, ModelError
from agent.market.schema import SeriesKey, format_time_ms
from agent.store import Store

_SEQS_PER_QUERY = 500


@dataclass(frozen=True)
class RecordedMarket:
    """The market of bars 0..end as the service saw it.

    Attributes:
        data: bars 0..end (bar 0 = the first stored candle): features, signals and masks from
            the recorded observations, closes from the recorded prices.
        first_bar: the first bar an epoch may decide on (the first decided bar whose whole
            look-back the records hold).
        decided: bars from `first_bar` to `end` the service decided.
        skipped: bars from `first_bar` to `end - 1` with no recorded observation (skipped by
            the service, or decided by a version that did not record it): their signals, masks
            and features are carried from the bar before.
        verified: observations checked against their decision records.
    """

    data: MarketData
    first_bar: int
    decided: int
    skipped: tuple[int, ...]
    verified: int


@dataclass(frozen=True)
class RecordedBar:
    """One bar the service decided, as its intent recorded it.

    Attributes:
        bar: the bar's index in the stored candles.
        bar_time_ms: the bar's open time.
        seq: its decision record's sequence number (None while only an intent).
        price: the bar's close, the price it was decided at.
        observation: the float32 observation the model decided on (None in rows of older
            versions).
    """

    bar: int
    bar_time_ms: int
    seq: int | None
    price: float
    observation: np.ndarray | None


def recorded_market(
    store: Store,
    market: str,
    open_times: np.ndarray,
    end: int,
    spec: PolicySpec,
    names: Sequence[str],
) -> RecordedMarket | None:
    """Return bars 0..end as the service recorded them, every observation verified.

    Args:
        store: the service's database.
        market: the series key the service decided on (`source:symbol:timeframe`).
        open_times: the stored candles' open times (bar index -> bar time).
        end: the epoch's valuation bar (it decides on bars before it).
        spec: the policy the epoch runs (its look-back bounds `first_bar`).
        names: the signal columns wanted, in order; a strategy a record lacks is masked.

    Returns:
        None when the service recorded no observation at or before bar `end` (a backtest's
        store, or an epoch before the service started): the caller uses the history.

    Raises:
        AuditError: an observation differs from its decision record, or its record is missing.
        DataError: a decided bar is not among the stored candles, or a close is missing.
    """
    times = np.asarray(open_times, dtype=np.int64)
    if not 0 <= end < len(times):
        raise DataError(f"bar {end} is not among the {len(times)} stored bars of {market}")
    bars = read_recorded_bars(store, market, times[: end + 1])
    if not any(b.observation is not None for b in bars):
        return None
    records = verify_observations(store, market, bars)
    needed = _bars_without_price(bars, end)
    closes = _stored_closes(store, market, times, needed)
    return assemble(times[: end + 1], bars, records, spec, names, closes.__getitem__)


def read_recorded_bars(store: Store, market: str, open_times: np.ndarray) -> list[RecordedBar]:
    """Return the bars the service decided up to the last of `open_times`, oldest first.

    Raises:
        DataError: a decided bar is not among `open_times` (the stored candles were rewritten).
    """
    rows = store.db.execute(
        "SELECT bar_time_ms, seq, outcome FROM service_ticks WHERE market = ? "
        "AND status != 'skipped' AND bar_time_ms <= ? ORDER BY bar_time_ms",
        [market, int(open_times[-1])],
    ).fetchall()
    found = []
    for bar_ms, seq, outcome in rows:
        bar = int(np.searchsorted(open_times, bar_ms))
        if bar >= len(open_times) or open_times[bar] != bar_ms:
            raise DataError(
                f"the service decided the bar {format_time_ms(bar_ms)} of {market}, which is "
                "not among the stored candles: the candles were changed after it was decided"
            )
        data = json.loads(outcome)
        observation = data.get("observation")
        found.append(
            RecordedBar(
                bar=bar,
                bar_time_ms=int(bar_ms),
                seq=None if seq is None else int(seq),
                price=float(data["price"]),
                observation=None
                if observation is None
                else np.asarray(observation, dtype=np.float32),
            )
        )
    return found


def verify_observations(
    store: Store, market: str, bars: Sequence[RecordedBar]
) -> dict[int, DecisionRecord]:
    """Check every recorded observation against its decision record; return records by bar.

    Raises:
        AuditError: a bar is not in the audit trail yet, its stored record does not hash to
            its stored hash, or the record differs from the observation.
    """
    observed = [b for b in bars if b.observation is not None]
    for bar in observed:
        if bar.seq is None:
            raise AuditError(
                f"bar {format_time_ms(bar.bar_time_ms)} of {market} is an intent not yet in "
                "the audit trail: the service's next start appends it"
            )
    stored = _read_records(store, sorted({b.seq for b in observed if b.seq is not None}))
    hashes = dict(zip(stored, decision_hashes(r for r, _ in stored.values()), strict=True))
    records = {}
    for bar in observed:
        assert bar.seq is not None
        where = f"bar {format_time_ms(bar.bar_time_ms)} (seq {bar.seq}) of {market}"
        if bar.seq not in stored:
            raise AuditError(f"{where}: the audit trail has no decision record {bar.seq}")
        record, stored_hash = stored[bar.seq]
        if hashes[bar.seq] != stored_hash:
            raise AuditError(f"{where}: the stored decision record does not hash to its hash")
        check_observation(record, bar, market)
        records[bar.bar] = record
    return records


def check_observation(record: DecisionRecord, bar: RecordedBar, market: str) -> ObservationParts:
    """Check that a recorded observation is the one its decision record names; return its parts.

    Raises:
        AuditError: the bar, market, digest, signals or masks differ (the message says which).
    """
    assert bar.observation is not None
    where = f"bar {format_time_ms(bar.bar_time_ms)} (seq {bar.seq}) of {market}"
    if record.bar_time_ms != bar.bar_time_ms or record.market != market:
        raise AuditError(
            f"{where}: the decision record is of bar {format_time_ms(record.bar_time_ms)} of "
            f"{record.market}"
        )
    digest = observation_digest(bar.observation)
    if digest != record.observation_digest:
        raise AuditError(
            f"{where}: the recorded observation's digest {digest} differs from the decision "
            f"record's {record.observation_digest}"
        )
    try:
        parts = observation_parts(bar.observation, len(record.strategy_names))
    except ModelError as e:
        raise AuditError(f"{where}: {e}") from e
    if tuple(bool(v) for v in parts.visible) != record.masks:
        raise AuditError(
            f"{where}: the observation's visibility {parts.visible.tolist()} differs from the "
            f"record's masks {list(record.masks)}"
        )
    signals_e9 = tuple(to_fixed_e9(float(v)) for v in parts.signals)
    if signals_e9 != record.signals_e9:
        raise AuditError(
            f"{where}: the observation's signals {list(signals_e9)} (e9) differ from the "
            f"record's {list(record.signals_e9)}"
        )
    return parts


def assemble(
    open_times: np.ndarray,
    bars: Sequence[RecordedBar],
    records: Mapping[int, DecisionRecord],
    spec: PolicySpec,
    names: Sequence[str],
    stored_close: Callable[[int], float],
) -> RecordedMarket:
    """Build the market of the bars of `open_times` from verified recorded bars (no I/O).

    A decided bar's features are its observation's last row; the first observation gives its
    whole look-back window. A bar without an observation takes its features from the first
    later observation whose window holds it (what the agent saw of it), else from the bar
    before; its signals and masks are the bar before's. Closes are the recorded prices, else
    `stored_close(bar)`; bars before the first observation close at the first recorded price.
    """
    n_bars, names = len(open_times), tuple(names)
    features = np.zeros((n_bars, len(FEATURE_NAMES)), dtype=np.float32)
    signals = np.zeros((n_bars, len(names)), dtype=np.float32)
    mask = np.zeros((n_bars, len(names)), dtype=bool)
    close = np.full(n_bars, np.nan)
    seen = np.zeros(n_bars, dtype=bool)  # features from a recorded observation
    observed = np.zeros(n_bars, dtype=bool)
    window_start: int | None = None
    for bar in bars:
        close[bar.bar] = bar.price
        if bar.observation is None:
            continue
        record = records[bar.bar]
        parts = observation_parts(bar.observation, len(record.strategy_names))
        rows = np.arange(bar.bar - len(parts.window) + 1, bar.bar + 1)
        fill = (rows >= 0) & ~seen[np.maximum(rows, 0)]
        features[rows[fill]] = parts.window[fill]
        seen[rows[fill]] = observed[bar.bar] = True
        if window_start is None:
            window_start = max(0, int(rows[0]))
        for j, i in enumerate(_columns(record.strategy_names, names)):
            if i is not None:
                signals[bar.bar, j], mask[bar.bar, j] = parts.signals[i], parts.visible[i]
    assert window_start is not None, "assemble needs at least one recorded observation"
    first = int(np.argmax(observed))
    for bar_index in range(first + 1, n_bars):
        if not observed[bar_index]:
            signals[bar_index], mask[bar_index] = signals[bar_index - 1], mask[bar_index - 1]
            if not seen[bar_index]:
                features[bar_index] = features[bar_index - 1]
    close[:first] = np.where(np.isnan(close[:first]), bars[0].price, close[:first])
    for unpriced in np.flatnonzero(np.isnan(close)).tolist():
        close[unpriced] = stored_close(unpriced)
    first_bar = max(first, window_start + spec.lookback_bars - 1, spec.first_bar)
    end = n_bars - 1
    data = MarketData(open_times.copy(), close, features, signals, mask, names)
    return RecordedMarket(
        data=data,
        first_bar=first_bar,
        decided=sum(1 for b in bars if b.bar >= first_bar),
        skipped=tuple(int(b) for b in range(first_bar, end) if not observed[b]),
        verified=int(observed.sum()),
    )


def _columns(recorded: Sequence[str], names: Sequence[str]) -> list[int | None]:
    """Return, for each of `names`, its position among a record's strategies (None: absent)."""
    position: dict[str, int] = {}
    for i, name in enumerate(recorded):
        position.setdefault(name, i)
    return [position.get(name) for name in names]


def _bars_without_price(bars: Sequence[RecordedBar], end: int) -> list[int]:
    """Return the bars after the first observation that have no recorded price."""
    first = next(b.bar for b in bars if b.observation is not None)
    priced = {b.bar for b in bars}
    return [bar for bar in range(first, end + 1) if bar not in priced]


def _stored_closes(
    store: Store, market: str, open_times: np.ndarray, bars: Sequence[int]
) -> dict[int, float]:
    """Return the stored candle close of each of `bars` (skipped ones: no price was recorded).

    Raises:
        DataError: a bar's candle is not stored.
    """
    if not bars:
        return {}
    candles = store.read_candles(
        _series_key(market), start_ms=int(open_times[bars[0]]), end_ms=int(open_times[bars[-1]])
    )
    by_time = dict(zip(candles["open_time"].tolist(), candles["close"].tolist(), strict=True))
    closes = {}
    for bar in bars:
        bar_ms = int(open_times[bar])
        if bar_ms not in by_time:
            raise DataError(f"no stored candle of {market} at {format_time_ms(bar_ms)}")
        closes[bar] = float(by_time[bar_ms])
    return closes


def _series_key(market: str) -> SeriesKey:
    """Parse `source:symbol:timeframe` (a symbol may hold a colon; source and timeframe not)."""
    source, _, rest = market.partition(":")
    symbol, _, timeframe = rest.rpartition(":")
    if not (source and symbol and timeframe):
        raise DataError(f"market {market!r}: expected source:symbol:timeframe")
    return SeriesKey(source, symbol, timeframe)


def _read_records(store: Store, seqs: Sequence[int]) -> dict[int, tuple[DecisionRecord, str]]:
    """Return the stored decision records (and their stored hashes) at `seqs`."""
    from agent.audit.record import record_from_json

    found = {}
    for start in range(0, len(seqs), _SEQS_PER_QUERY):
        chunk = list(seqs[start : start + _SEQS_PER_QUERY])
        rows = store.db.execute(
            f"SELECT seq, hash, record FROM decisions WHERE seq IN ({','.join('?' * len(chunk))})",
            chunk,
        ).fetchall()
        for seq, stored_hash, text in rows:
            found[int(seq)] = (record_from_json(text), str(stored_hash))
    return found
