"""The one way backtest, training and the service get strategy signals.

`compute_signals` runs every strategy on the same candles, each isolated (trusted shipped code
in-process, everything else in its own sandboxed child, several at a time), masks the ones
that fail (mask False, value 0, and the reason recorded) and never raises for a strategy's
fault. With a store, results for stored candles are computed once: they are cached in the
`signal_cache` table keyed by the strategy's code hash, a hash of its effective parameters,
the series, the first and last open time of the range, and a hash of the exact input data
(candles plus the hidden series the strategy reads), so candles replaced in the store or a
changed plugin never serve a stale signal. Failures that depend on the machine (a timeout, a
resource limit) are not cached; other failures are, like signals.

A third-party strategy's signal over history is accepted only after the look-ahead check
(`agent.plugins.lookahead`): its value at random bars, recomputed from the candles up to each
bar in one extra sandboxed child, must be the same. Its verdict is cached with the signal
(`lookahead_samples`); a strategy caught is quarantined (masked here from then on, on any
data, with the recorded reason) and its values inside the declared warm-up are not used
(they are not checked). Hidden series reach only strategies named in `strategies.fixtures`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agent.config import StrategiesSettings
from agent.errors import PluginError
from agent.market.schema import CANDLE_COLUMNS, SeriesKey
from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.interface import HIDDEN_ATTR, Strategy
from agent.plugins.lookahead import (
    LookaheadVerdict,
    check_lookahead,
    read_quarantine,
    record_quarantine,
)
from agent.plugins.sandbox import SandboxLimits, SignalResult, run_plugin, run_trusted
from agent.store import Store

StrategyLike = DiscoveredStrategy | type[Strategy]
"""What `compute_signals` accepts: a discovered strategy or a (trusted) strategy class."""

_RESOURCE_FAILURES = ("timed out", "exceeded the", "was killed")


@dataclass(frozen=True)
class SignalMatrix:
    """Every strategy's signal on one candle frame, column by column.

    Attributes:
        names: one per column, in the order the strategies were given.
        values: float64 [bars, strategies]; 0 wherever the mask is False.
        mask: bool [bars, strategies]; False where a signal is unavailable (warm-up, failure).
        reasons: why each failed strategy has no signal, by name.
        open_time: int64 [bars], the candles' open times.
        from_cache: names whose result came from the store's cache.
    """

    names: tuple[str, ...]
    values: np.ndarray
    mask: np.ndarray
    reasons: Mapping[str, str]
    open_time: np.ndarray
    from_cache: frozenset[str]

    def column(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return (values, mask) of one strategy."""
        index = self.names.index(name)
        return self.values[:, index], self.mask[:, index]

    @property
    def available(self) -> tuple[str, ...]:
        """Names of the strategies that produced a signal."""
        return tuple(n for n in self.names if n not in self.reasons)


@dataclass(frozen=True)
class _Job:
    item: DiscoveredStrategy
    params: dict[str, Any]
    params_hash: str
    data_hash: str


def params_sha256(params: Mapping[str, Any]) -> str:
    """Return the hash of a parameter set (key order does not matter)."""
    blob = json.dumps(dict(params), sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()


def as_discovered(strategy: StrategyLike) -> DiscoveredStrategy:
    """Return `strategy` as a DiscoveredStrategy (a class is trusted: it is already imported)."""
    if isinstance(strategy, DiscoveredStrategy):
        return strategy
    return DiscoveredStrategy.from_class(strategy, origin="in-process", trusted=True)


def _frame(
    candles: pd.DataFrame, hidden: Mapping[str, Any] | None
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    frame = candles[list(CANDLE_COLUMNS)].reset_index(drop=True)
    series = {}
    for name, values in (hidden or {}).items():
        array = np.asarray(values, dtype="float64")
        if array.shape == (len(frame),):
            series[name] = array
    frame.attrs = {HIDDEN_ATTR: series} if series else {}
    return frame, series


def _stored_hidden(
    store: Store, key: SeriesKey, frame: pd.DataFrame, names: set[str]
) -> dict[str, np.ndarray]:
    """Read the hidden series the strategies need from the store, when they cover the frame."""
    found = {}
    times = frame["open_time"].to_numpy(dtype="int64")
    for name in sorted(names):
        stored = store.read_hidden_series(key, name)
        values = stored.reindex(times).to_numpy(dtype="float64")
        if len(values) and not np.isnan(values).any():
            found[name] = values
    return found


def _data_sha256(
    frame: pd.DataFrame, hidden: Mapping[str, np.ndarray], names: Sequence[str]
) -> str:
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(frame["open_time"].to_numpy(dtype="<i8")).tobytes())
    for column in CANDLE_COLUMNS[1:]:
        digest.update(np.ascontiguousarray(frame[column].to_numpy(dtype="<f8")).tobytes())
    for name in sorted(names):
        digest.update(name.encode() + b"\0")
        if name in hidden:
            digest.update(np.ascontiguousarray(hidden[name], dtype="<f8").tobytes())
    return digest.hexdigest()


def _run_one(job: _Job, frame: pd.DataFrame, limits: SandboxLimits | None) -> SignalResult:
    item, info = job.item, job.item.info
    assert info is not None
    if item.trusted and item.strategy_class is not None:
        return run_trusted(item.strategy_class, [frame], params=item.params)[0]
    if item.location is None:
        return SignalResult.failure(item.name, "has no code location to run")
    return run_plugin(
        item.location,
        [frame],
        name=item.name,
        params=item.params,
        warmup_bars=info.warmup_bars,
        hidden_inputs=info.hidden_inputs,
        limits=limits or item.limits or SandboxLimits(),
        expected_sha256=item.code_hash if item.location.kind == "file" else None,
    )[0]


# --- the cache -----------------------------------------------------------------------------
def _cache_key(job: _Job, series: str, frame: pd.DataFrame) -> list[Any]:
    times = frame["open_time"]
    return [
        job.item.code_hash,
        job.params_hash,
        series,
        int(times.iloc[0]),
        int(times.iloc[-1]),
        job.data_hash,
    ]


def _cache_get(
    store: Store, key: list[Any], name: str, bars: int, checked: bool
) -> SignalResult | None:
    """Return the cached result; with `checked`, only a signal whose look-ahead check ran."""
    row = store.db.execute(
        "SELECT ok, reason, values_f64, elapsed_s, bars, lookahead_samples FROM signal_cache "
        "WHERE code_hash = ? AND params_hash = ? AND series = ? AND first_ms = ? "
        "AND last_ms = ? AND data_hash = ?",
        key,
    ).fetchone()
    if row is None or int(row[4]) != bars:
        return None
    ok, reason, blob, elapsed_s, _, samples = row
    if checked and ok and samples is None:
        return None
    if not ok:
        return SignalResult.failure(name, str(reason), float(elapsed_s))
    values = np.frombuffer(blob, dtype="<f8").astype("float64")
    if len(values) != bars:
        return None
    return SignalResult(name, values, ~np.isnan(values), True, None, float(elapsed_s))


def _cache_put(
    store: Store, rows: Sequence[tuple[list[Any], SignalResult, int, int | None]]
) -> None:
    records = []
    for key, result, bars, samples in rows:
        if not result.ok and str(result.reason).startswith(_RESOURCE_FAILURES):
            continue
        blob = None if result.values is None else result.values.astype("<f8").tobytes()
        records.append(
            (
                *key,
                result.name,
                bars,
                int(result.ok),
                result.reason,
                blob,
                result.elapsed_s,
                int(time.time() * 1000),
                samples,
            )
        )
    if not records:
        return
    with store.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO signal_cache (code_hash, params_hash, series, first_ms, "
            "last_ms, data_hash, strategy, bars, ok, reason, values_f64, elapsed_s, created_ms, "
            "lookahead_samples) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            records,
        )


# --- the look-ahead check ------------------------------------------------------------------
@dataclass(frozen=True)
class _Checked:
    result: SignalResult
    verdict: LookaheadVerdict | None
    cacheable: bool


def _run_checked(
    job: _Job, frame: pd.DataFrame, limits: SandboxLimits | None, samples: int
) -> _Checked:
    """Run an untrusted strategy on the frame, then check its signal for look-ahead."""
    item = job.item
    limits = limits or item.limits or SandboxLimits()
    result = _run_one(job, frame, limits)
    if not result.ok or result.values is None or not samples:
        return _Checked(result, None, True)
    if item.location is None or item.info is None:
        return _Checked(result, None, True)
    verdict = check_lookahead(item, frame, result.values, samples=samples, limits=limits)
    open_time = frame["open_time"].to_numpy(dtype="int64")
    if verdict.caught:
        return _Checked(SignalResult.failure(item.name, verdict.reason(open_time)), verdict, True)
    if verdict.error is not None:
        failed = SignalResult.failure(item.name, verdict.reason(), result.elapsed_s)
        return _Checked(failed, verdict, False)
    values = result.values.copy()
    values[: item.info.warmup_bars] = np.nan  # not checked, so not used
    checked = SignalResult(item.name, values, ~np.isnan(values), True, None, result.elapsed_s)
    return _Checked(checked, verdict, True)


def hidden_refusal(item: DiscoveredStrategy, fixtures: Sequence[str]) -> str | None:
    info = item.info
    if info is None or not info.hidden_inputs or info.name in fixtures:
        return None
    return (
        f"reads the hidden series {', '.join(info.hidden_inputs)}, which only test fixtures "
        f"named in strategies.fixtures may read ({info.name!r} is not one): it gets none"
    )


# --- public API ----------------------------------------------------------------------------
def compute_signals(
    strategies: Sequence[StrategyLike],
    candles: pd.DataFrame,
    *,
    key: SeriesKey | str | None,
    store: Store | None = None,
    hidden: Mapping[str, Any] | None = None,
    limits: SandboxLimits | None = None,
    settings: StrategiesSettings | None = None,
    source: str = "signals",
    lookahead: bool = True,
) -> SignalMatrix:
    """Compute every strategy's signal on `candles`, masking the ones that fail.

    Args:
        strategies: discovered strategies or trusted classes; names must be unique.
        candles: the candle frame (columns `open_time`, open, high, low, close, volume).
        key: the series the candles come from (part of the cache key).
        store: cache signals and look-ahead verdicts here (needs `key`), and read and record
            quarantined strategies; hidden series a fixture declares but `hidden` lacks are
            also read from it.
        hidden: hidden series aligned with `candles`, given only to strategies that declare
            them in `hidden_inputs` and are named in `settings.fixtures`.
        limits: the sandbox limits; default: those each strategy was discovered with (the
            configured `strategies.*`), else those of `settings`.
        settings: the `strategies` section (look-ahead samples, fixtures, limits); default
            `StrategiesSettings()`, which names no fixture.
        source: what the signals are for (training, backtest, rewards, service), recorded
            with a quarantine.
        lookahead: check third-party signals for look-ahead. Only a caller that uses the
            value at the last bar alone (the service's tick, causal by construction) may
            pass False.

    Raises:
        PluginError: two strategies share a name.
    """
    items = [as_discovered(s) for s in strategies]
    names = tuple(item.name for item in items)
    if len(set(names)) != len(names):
        raise PluginError(f"strategy names must be unique, got {list(names)}")
    settings = settings or StrategiesSettings()
    frame, hidden_series = _frame(candles, hidden)
    bars = len(frame)
    series = None if key is None else str(key)
    results: dict[str, SignalResult] = {}
    for item in items:
        refusal = hidden_refusal(item, settings.fixtures)
        if refusal is not None:
            results[item.name] = SignalResult.failure(item.name, refusal)
    declared = {
        h
        for item in items
        if item.info and item.name not in results
        for h in item.info.hidden_inputs
    }
    if store is not None and isinstance(key, SeriesKey) and declared - set(hidden_series):
        hidden_series.update(_stored_hidden(store, key, frame, declared - set(hidden_series)))
    if hidden_series:
        frame.attrs = {HIDDEN_ATTR: hidden_series}
    quarantine = read_quarantine(store) if store is not None else {}

    cached: set[str] = set()
    todo: list[tuple[_Job, list[Any] | None]] = []
    for item in items:
        if item.name in results:
            continue
        if not item.ok or item.info is None:
            results[item.name] = SignalResult.failure(item.name, f"{item.status}: {item.error}")
            continue
        if not item.trusted and item.code_hash in quarantine:
            results[item.name] = SignalResult.failure(item.name, quarantine[item.code_hash].reason)
            continue
        params = {**item.info.params, **item.params}
        job = _Job(
            item,
            params,
            params_sha256(params),
            _data_sha256(frame, hidden_series, item.info.hidden_inputs),
        )
        cache_key = None
        if store is not None and series is not None and item.code_hash and bars:
            cache_key = _cache_key(job, series, frame)
            need_check = lookahead and not item.trusted
            hit = _cache_get(store, cache_key, item.name, bars, checked=need_check)
            if hit is not None:
                results[item.name] = hit
                cached.add(item.name)
                continue
        todo.append((job, cache_key))

    samples = settings.lookahead_samples if lookahead else 0
    sandboxed = [(job, k) for job, k in todo if not job.item.trusted]
    checked: dict[str, _Checked] = {}
    workers = max(1, min(len(sandboxed), os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="agora-signal") as pool:
        futures = {
            job.item.name: pool.submit(_run_checked, job, frame, limits, samples)
            for job, _ in sandboxed
        }
        for job, _ in todo:
            if job.item.trusted:
                results[job.item.name] = _run_one(job, frame, limits)
        for name, future in futures.items():
            checked[name] = future.result()
            results[name] = checked[name].result
    if store is not None:
        open_time = frame["open_time"].to_numpy(dtype="int64")
        for job, _ in sandboxed:
            verdict = checked[job.item.name].verdict
            if verdict is not None and verdict.first_bar is not None:
                record_quarantine(
                    store,
                    job.item,
                    verdict,
                    str(results[job.item.name].reason),
                    series=series,
                    first_bar_ms=int(open_time[verdict.first_bar]),
                    source=source,
                )
        rows = []
        for job, k in todo:
            outcome = checked.get(job.item.name)
            if k is None or (outcome is not None and not outcome.cacheable):
                continue
            verdict = outcome.verdict if outcome is not None else None
            rows.append((k, results[job.item.name], bars, verdict.samples if verdict else None))
        _cache_put(store, rows)
    return _assemble(names, results, frame, frozenset(cached))


def _assemble(
    names: tuple[str, ...],
    results: Mapping[str, SignalResult],
    frame: pd.DataFrame,
    cached: frozenset[str],
) -> SignalMatrix:
    bars = len(frame)
    values = np.zeros((bars, len(names)), dtype="float64")
    mask = np.zeros((bars, len(names)), dtype=bool)
    reasons = {}
    for column, name in enumerate(names):
        result = results[name]
        if not result.ok or result.values is None:
            reasons[name] = str(result.reason)
            continue
        available = ~np.isnan(result.values)
        mask[:, column] = available
        values[available, column] = result.values[available]
    return SignalMatrix(
        names=names,
        values=values,
        mask=mask,
        reasons=reasons,
        open_time=frame["open_time"].to_numpy(dtype="int64"),
        from_cache=cached,
    )
