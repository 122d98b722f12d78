"""Validate a strategy before it is registered: shape, determinism, causality, speed, originality.

Every check runs on the same reference data set, a seeded synthetic market
(`strategies.reference_seed`, `strategies.reference_bars` hourly bars, with its planted series
for the test fixtures that declare it). Untrusted code runs only in the sandbox, in two
children: the first computes the signal on the whole data set (shape, range and speed); the
second computes it again (determinism, across processes) together with the look-ahead frames.

The look-ahead check cuts the data after bar t at `strategies.causality_cut_points` bars spread
from the end of the warm-up to the end, and recomputes the signal twice per cut: with the later
candles removed, and with them replaced by another synthetic market continuing from bar t's
close. A causal strategy gives the same values at every bar up to t in all three runs; the
report names the first bar whose value changed.

Because those cut points and that data can be worked out from the configuration, the causality
check also runs the look-ahead check of the paid paths (`agent.plugins.lookahead`) on a fresh
synthetic market from the operating system's randomness, longer than any stored series, and on
the stored market where one exists: the signal at random bars, recomputed from the candles up to
each, must be the same. Shipped (trusted) strategies skip that part.

The originality check regresses the signal on every registered signal and its lags
(`agent.env.neutral.explain`) and refuses it when they explain `strategies.originality_max_r2`
of its variance or more, on the reference data set and on the stored market (where the store
holds the configured market's candles), so a copy that behaves differently on the reference
data alone is still caught. Shipped strategies were registered before any submission: their R²
is reported, never refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from agent.config import Settings, StrategiesSettings, SyntheticSettings
from agent.env.neutral import MIN_ROWS, Explanation, explain
from agent.errors import PluginError
from agent.market.schema import CANDLE_COLUMNS, SeriesKey
from agent.market.synthetic import PLANTED_SERIES_NAME, generate
from agent.plugins.discovery import DiscoveredStrategy, discover, discover_file, find
from agent.plugins.interface import HIDDEN_ATTR, as_signal
from agent.plugins.lookahead import check_lookahead
from agent.plugins.sandbox import SandboxLimits, SignalResult, run_plugin, run_trusted
from agent.plugins.signals import StrategyLike, as_discovered, compute_signals, hidden_refusal
from agent.store import Store

REFERENCE_TIMEFRAME = "1h"
REFERENCE_LABEL = "the reference data"
_AFTER_SHAPE = ("determinism", "causality", "speed", "originality")
EXPLAINER_FLOOR = 0.1
"""Smallest R² of its own for a registered strategy to be named in the originality message."""
MAX_NAMED = 3
"""Most registered strategies the originality message names."""


@dataclass(frozen=True)
class Check:
    """One validation check: its name, whether it passed, and a message saying why."""

    name: str
    passed: bool
    message: str


@dataclass(frozen=True)
class ValidationReport:
    """The result of `validate`.

    Attributes:
        name: the strategy's name.
        origin: where it came from ("file:<path>", "package:<dist>", "shipped", "in-process").
        code_hash: its code hash (what gets registered on-chain).
        checks: load, shape and range, determinism, causality, speed, originality.
        signal: its signal on the reference data set, when it produced one.
        seconds_per_10k_bars: its measured speed, when it ran.
    """

    name: str
    origin: str
    code_hash: str | None
    checks: tuple[Check, ...]
    signal: np.ndarray | None = None
    seconds_per_10k_bars: float | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def check(self, name: str) -> Check:
        """Return the check called `name`."""
        return next(c for c in self.checks if c.name == name)


def _config(settings: Settings | StrategiesSettings) -> StrategiesSettings:
    return settings.strategies if isinstance(settings, Settings) else settings


@lru_cache(maxsize=4)
def _markets(seed: int, bars: int) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, np.ndarray]:
    main = generate(SyntheticSettings(seed=seed, bars=bars), REFERENCE_TIMEFRAME)
    other = generate(SyntheticSettings(seed=seed + 1, bars=bars), REFERENCE_TIMEFRAME)
    return main.candles, main.planted, other.candles, other.planted


def _with_hidden(candles: pd.DataFrame, planted: np.ndarray) -> pd.DataFrame:
    frame = candles[list(CANDLE_COLUMNS)].reset_index(drop=True).copy()
    frame.attrs = {HIDDEN_ATTR: {PLANTED_SERIES_NAME: np.array(planted, dtype="float64")}}
    return frame


def reference_candles(settings: Settings | StrategiesSettings) -> pd.DataFrame:
    """Return the reference data set: seeded synthetic candles with their planted series."""
    config = _config(settings)
    candles, planted, _, _ = _markets(config.reference_seed, config.reference_bars)
    return _with_hidden(candles, planted)


def altered_after(candles: pd.DataFrame, cut: int, settings: StrategiesSettings) -> pd.DataFrame:
    """Return `candles` with every bar after `cut` replaced by another synthetic market.

    The replacement keeps the open times and continues from bar `cut`'s close, so only the
    information after the cut changes.
    """
    _, _, other, other_planted = _markets(settings.reference_seed, settings.reference_bars)
    frame = candles.copy()
    frame.attrs = {HIDDEN_ATTR: dict(candles.attrs.get(HIDDEN_ATTR) or {})}
    tail = slice(cut + 1, len(frame))
    n = len(frame) - cut - 1
    scale = float(frame["close"].iloc[cut]) / float(other["open"].iloc[cut + 1])
    for column in ("open", "high", "low", "close"):
        frame.loc[frame.index[tail], column] = other[column].to_numpy()[cut + 1 :][:n] * scale
    frame.loc[frame.index[tail], "volume"] = other["volume"].to_numpy()[cut + 1 :][:n]
    hidden = frame.attrs[HIDDEN_ATTR]
    if PLANTED_SERIES_NAME in hidden:
        planted = np.array(hidden[PLANTED_SERIES_NAME], dtype="float64")
        planted[cut + 1 :] = other_planted[cut + 1 :][:n]
        hidden[PLANTED_SERIES_NAME] = planted
    return frame


def cut_points(bars: int, warmup_bars: int, count: int) -> list[int]:
    """Return up to `count` distinct bars, spread from the end of the warm-up to the end."""
    low = min(max(warmup_bars, 1), bars - 2)
    return sorted({round(float(t)) for t in np.linspace(low, bars - 2, count)})


def reference_signals(
    strategies: Sequence[StrategyLike], settings: Settings | StrategiesSettings
) -> dict[str, np.ndarray]:
    """Return registered strategies' signals on the reference data set (for originality)."""
    config = _config(settings)
    frame = reference_candles(config)
    matrix = compute_signals(
        strategies,
        frame,
        key=None,
        hidden=frame.attrs[HIDDEN_ATTR],
        settings=config,
        lookahead=False,
    )
    signals = {}
    for name in matrix.available:
        values, mask = matrix.column(name)
        signals[name] = np.where(mask, values, np.nan)
    return signals


# --- the checks ----------------------------------------------------------------------------
def _run(
    item: DiscoveredStrategy, frames: Sequence[pd.DataFrame], limits: SandboxLimits
) -> list[SignalResult]:
    assert item.info is not None
    if item.trusted and item.strategy_class is not None:
        return run_trusted(item.strategy_class, frames, params=item.params, allow_nan=True)
    assert item.location is not None
    return run_plugin(
        item.location,
        frames,
        name=item.name,
        params=item.params,
        warmup_bars=item.info.warmup_bars,
        hidden_inputs=item.info.hidden_inputs,
        limits=limits,
        expected_sha256=item.code_hash if item.location.kind == "file" else None,
        allow_nan=True,
    )


def _shape_check(item: DiscoveredStrategy, first: SignalResult, bars: int) -> Check:
    assert item.info is not None
    if not first.ok or first.values is None:
        return Check("shape and range", False, str(first.reason))
    try:
        as_signal(first.values, bars, name=item.name, warmup_bars=item.info.warmup_bars)
    except PluginError as e:
        return Check("shape and range", False, str(e))
    return Check(
        "shape and range",
        True,
        f"{bars} values in [-1, 1], no NaN after the warm-up of {item.info.warmup_bars} bars",
    )


def _truncated(frame: pd.DataFrame, cut: int) -> pd.DataFrame:
    short = frame.iloc[: cut + 1].copy()
    hidden = frame.attrs.get(HIDDEN_ATTR) or {}
    short.attrs = {HIDDEN_ATTR: {name: values[: cut + 1] for name, values in hidden.items()}}
    return short


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.isclose(a, b, rtol=1e-9, atol=1e-12) | (np.isnan(a) & np.isnan(b))


def _determinism_check(first: np.ndarray, again: SignalResult) -> Check:
    if not again.ok or again.values is None:
        return Check("determinism", False, f"the second run failed: {again.reason}")
    differ = ~_same(first, again.values)
    if differ.any():
        at = int(np.flatnonzero(differ)[0])
        return Check(
            "determinism",
            False,
            f"two runs on the same candles differ at {int(differ.sum())} bar(s), first at bar "
            f"{at} ({first[at]!r} then {again.values[at]!r}): seed any randomness",
        )
    return Check("determinism", True, "two runs in separate processes gave identical output")


def _causality_check(
    full: np.ndarray,
    cuts: Sequence[int],
    removed: Sequence[SignalResult],
    altered: Sequence[SignalResult],
) -> Check:
    earliest: tuple[int, int, str] | None = None
    changed = 0
    for cut, short, other in zip(cuts, removed, altered, strict=True):
        for how, result in (("removed", short), ("altered", other)):
            if not result.ok or result.values is None:
                return Check(
                    "causality",
                    False,
                    f"could not be checked: with the candles after bar {cut} {how}, the "
                    f"strategy failed: {result.reason}",
                )
            differ = ~_same(full[: cut + 1], result.values[: cut + 1])
            if differ.any():
                changed += 1
                bar = int(np.flatnonzero(differ)[0])
                if earliest is None or bar < earliest[0]:
                    earliest = (bar, cut, how)
    if earliest is not None:
        bar, cut, how = earliest
        return Check(
            "causality",
            False,
            f"looks ahead: its signal at bar {bar} changed when the candles after bar {cut} "
            f"were {how} ({changed} of {2 * len(cuts)} look-ahead runs changed a bar at or before "
            "their cut); "
            "a signal may use only candles up to its own bar",
        )
    return Check(
        "causality",
        True,
        f"unchanged up to each of {len(cuts)} cut points with later candles removed or altered",
    )


@dataclass(frozen=True)
class _StoredMarket:
    """The configured market's candles in the store, and the candidate's signal on them."""

    label: str
    key: SeriesKey
    frame: pd.DataFrame
    run: SignalResult


def _stored_market(
    item: DiscoveredStrategy,
    settings: Settings | StrategiesSettings,
    store: Store | None,
    limits: SandboxLimits,
) -> _StoredMarket | None:
    """Run the candidate on the stored market (once, for look-ahead and originality alike)."""
    if store is None or not isinstance(settings, Settings):
        return None
    from agent.market.data import default_key

    key = default_key(settings)
    candles = store.read_candles(key)
    if len(candles) < 2:
        return None
    frame = candles[list(CANDLE_COLUMNS)].reset_index(drop=True)
    return _StoredMarket(f"the stored market {key}", key, frame, _run(item, [frame], limits)[0])


def _fresh_market(
    settings: Settings | StrategiesSettings, store: Store | None
) -> tuple[str, pd.DataFrame]:
    """Return a fresh synthetic market longer than any stored series (seed and extra length
    from OS randomness), for the random look-ahead check."""
    config = _config(settings)
    longest = max([s.count for s in store.list_series()] if store is not None else [], default=0)
    bars = max(config.reference_bars, longest) + 1 + secrets.randbelow(1_000)
    market = generate(SyntheticSettings(seed=secrets.randbits(31), bars=bars), REFERENCE_TIMEFRAME)
    return f"fresh synthetic data of {bars} bars", _with_hidden(market.candles, market.planted)


def _random_causality_check(
    item: DiscoveredStrategy,
    settings: Settings | StrategiesSettings,
    limits: SandboxLimits,
    store: Store | None,
    stored: _StoredMarket | None,
) -> Check | None:
    """Run the paid paths' look-ahead check; None when it passed on every data set."""
    config = _config(settings)
    label, frame = _fresh_market(settings, store)
    markets = [(label, frame, _run(item, [frame], limits)[0])]
    if stored is not None:
        markets.append((stored.label, stored.frame, stored.run))
    for label, frame, full in markets:
        if not full.ok or full.values is None:
            return Check("causality", False, f"could not be checked on {label}: {full.reason}")
        verdict = check_lookahead(
            item, frame, full.values, samples=config.lookahead_samples, limits=limits
        )
        if verdict.caught:
            return Check(
                "causality",
                False,
                f"looks ahead: its signal at bar {verdict.first_bar} of {label} is "
                f"{verdict.full_value!r} on the full history but {verdict.cut_value!r} from the "
                f"candles up to that bar only ({verdict.samples} random bars checked); "
                "a signal may use only candles up to its own bar",
            )
        if verdict.error is not None:
            return Check("causality", False, f"could not be checked on {label}: {verdict.error}")
    return None


def _speed_check(elapsed_s: float, bars: int, budget: float) -> tuple[Check, float]:
    per_10k = elapsed_s / bars * 10_000
    message = f"{per_10k:.3g} s per 10,000 bars (budget {budget:g} s)"
    if per_10k > budget:
        return Check("speed", False, f"too slow: {message}"), per_10k
    return Check("speed", True, message), per_10k


@dataclass(frozen=True)
class DataSet:
    """One data set the originality check runs on.

    Attributes:
        label: how messages name it ("the reference data", "the stored market …").
        signal: the candidate's signal there (NaN where it has no value).
        registered: the registered strategies' signals there, by the name messages use.
    """

    label: str
    signal: np.ndarray
    registered: Mapping[str, np.ndarray]


def _named(explanation: Explanation) -> str:
    names = explanation.explained_by(EXPLAINER_FLOOR)[:MAX_NAMED] or [explanation.alone[0][0]]
    alone = dict(explanation.alone)
    return ", ".join(f"{name} ({alone[name]:.3f} alone)" for name in names)


def _originality_check(
    name: str, data_sets: Sequence[DataSet], limit: float, lags: int, *, shipped: bool = False
) -> Check:
    """Refuse a signal that the registered signals and their lags explain with R² >= `limit`.

    A registered signal under the candidate's own name (an earlier version) is left out. A
    shipped strategy is measured but not refused (it was registered before any submission).
    """
    measured: list[tuple[str, Explanation]] = []
    for data in data_sets:
        others = {other: values for other, values in data.registered.items() if other != name}
        explanation = explain(data.signal, others, lags)
        if explanation.alone:
            measured.append((data.label, explanation))
    if not measured:
        return Check("originality", True, "no registered strategy to compare with")
    label, worst = max(measured, key=lambda item: item[1].r2)
    over = [(lab, e) for lab, e in measured if e.r2 >= limit]
    if over and not shipped:
        where = " and ".join(f"{e.r2:.3f} on {lab}" for lab, e in over)
        named = _named(worst) + (f" on {label}" if len(over) > 1 else "")
        return Check(
            "originality",
            False,
            f"its signal is explained by the registered strategies (R² {where}, limit {limit:g}, "
            f"lags 0-{lags}): {named}: refused as a copy",
        )
    message = f"highest R² {worst.r2:.3f}, on {label}, by {_named(worst)} (limit {limit:g})"
    if over:
        message += ": shipped with Agora, registered before any submission, so not refused"
    return Check("originality", True, message)


def _comparable(
    item: DiscoveredStrategy, registered: Sequence[StrategyLike]
) -> dict[str, DiscoveredStrategy]:
    """Return the registered strategies `item` is compared with, by the name messages use.

    One with the same name and origin is an earlier version of it and is left out; a shipped or
    packaged strategy with the same name is another strategy, named with its origin.
    """
    comparable = {}
    for other in map(as_discovered, registered):
        if not other.ok:
            continue
        if other.name != item.name:
            comparable[other.name] = other
        elif other.origin != item.origin and (
            other.origin == "shipped" or other.origin.startswith("package:")
        ):
            comparable[f"{other.name} ({other.origin})"] = other
    return comparable


def _originality_data(
    item: DiscoveredStrategy,
    signal: np.ndarray,
    registered: Mapping[str, np.ndarray] | Sequence[StrategyLike],
    config: StrategiesSettings,
    store: Store | None,
    stored: _StoredMarket | None,
) -> list[DataSet] | Check:
    """Return the data sets to measure originality on, or a failed check when the candidate
    produced no signal on the stored market."""
    assert item.info is not None
    warmup = item.info.warmup_bars

    def checked(values: np.ndarray) -> np.ndarray:
        values = np.array(values, dtype="float64")
        values[:warmup] = np.nan  # the warm-up is not checked (so cannot dilute a copy)
        return values

    if isinstance(registered, Mapping):
        return [DataSet(REFERENCE_LABEL, checked(signal), registered)]
    comparable = _comparable(item, registered)
    if not comparable:
        return []
    names = reference_signals(list(comparable.values()), config)
    reference = {label: names[o.name] for label, o in comparable.items() if o.name in names}
    data_sets = [DataSet(REFERENCE_LABEL, checked(signal), reference)]
    if stored is None or len(stored.frame) < MIN_ROWS + config.originality_lags:
        return data_sets  # too short a market to fit anything on
    if not stored.run.ok or stored.run.values is None:
        message = f"could not be checked on {stored.label}: {stored.run.reason}"
        return Check("originality", False, message)
    matrix = compute_signals(
        list(comparable.values()),
        stored.frame,
        key=stored.key,
        store=store,
        settings=config,
        source="validation",
    )
    on_market = {}
    for label, other in comparable.items():
        if other.name in matrix.available:
            values, mask = matrix.column(other.name)
            on_market[label] = np.where(mask, values, np.nan)
    data_sets.append(DataSet(stored.label, checked(stored.run.values), on_market))
    return data_sets


def _resolve(
    target: DiscoveredStrategy | StrategyLike | Path | str, config: StrategiesSettings
) -> DiscoveredStrategy | Check:
    if isinstance(target, DiscoveredStrategy | type):
        return as_discovered(target)
    path = Path(target)
    if path.suffix == ".py" or path.is_file():
        found = discover_file(path, SandboxLimits.from_settings(config))
        if len(found) != 1:
            names = ", ".join(repr(d.name) for d in found)
            message = f"{path} defines {len(found)} strategies ({names}): validate one by name"
            return Check("load", False, message)
        return found[0]
    try:
        return find(discover(config), str(target))
    except PluginError as e:
        return Check("load", False, str(e))


def validate(
    target: DiscoveredStrategy | StrategyLike | Path | str,
    settings: Settings | StrategiesSettings,
    *,
    registered: Mapping[str, np.ndarray] | Sequence[StrategyLike] | None = None,
    store: Store | None = None,
) -> ValidationReport:
    """Validate one strategy on the reference data set; untrusted code runs in the sandbox.

    Args:
        target: a discovered strategy, a strategy class, a plugin file path, or a name.
        settings: the configuration (`strategies` section: limits, budget, threshold, data).
        registered: the strategies already registered, as strategies (their signals are
            computed on the reference data set and on the stored market) or as their signals
            on the reference data set alone (see `reference_signals`). One with the target's
            own name (an earlier version) is not compared.
        store: the store whose longest series the fresh look-ahead data must exceed, and whose
            market (with full `Settings`) is checked too: for look-ahead and, when
            `registered` are strategies, for originality.
    """
    config = _config(settings)
    item = _resolve(target, config)
    if isinstance(item, Check):
        return ValidationReport(str(target), "?", None, (item,))
    if not item.ok or item.info is None:
        load = Check("load", False, f"{item.status}: {item.error}")
        return ValidationReport(item.name, item.origin, item.code_hash, (load,))
    info = item.info
    checks = [Check("load", True, f"{item.name} {info.version} from {item.origin}")]
    limits = SandboxLimits.from_settings(config)
    frame = reference_candles(config)
    bars = len(frame)
    refusal = hidden_refusal(item, config.fixtures)
    if refusal is not None:
        checks.append(Check("shape and range", False, refusal))
        skipped = "not checked: the strategy produced no signal"
        checks += [Check(name, False, skipped) for name in _AFTER_SHAPE]
        return ValidationReport(item.name, item.origin, item.code_hash, tuple(checks))

    first = _run(item, [frame], limits)[0]
    checks.append(_shape_check(item, first, bars))
    if not first.ok or first.values is None:
        skipped = "not checked: the strategy produced no signal"
        checks += [Check(name, False, skipped) for name in _AFTER_SHAPE]
        return ValidationReport(item.name, item.origin, item.code_hash, tuple(checks))
    signal = first.values

    cuts = cut_points(bars, info.warmup_bars, config.causality_cut_points)
    frames = [frame, *(_truncated(frame, cut) for cut in cuts)]
    frames += [altered_after(frame, cut, config) for cut in cuts]
    runs = _run(item, frames, limits)
    checks.append(_determinism_check(signal, runs[0]))
    causality = _causality_check(signal, cuts, runs[1 : 1 + len(cuts)], runs[1 + len(cuts) :])
    stored = _stored_market(item, settings, store, limits)
    if causality.passed and not item.trusted:
        causality = _random_causality_check(item, settings, limits, store, stored) or Check(
            "causality",
            True,
            causality.message + f", and at {config.lookahead_samples} random bars of fresh data "
            "recomputed from the candles up to each",
        )
    checks.append(causality)
    elapsed = min(first.elapsed_s, runs[0].elapsed_s) if runs[0].ok else first.elapsed_s
    speed, per_10k = _speed_check(elapsed, bars, config.speed_budget_s_per_10k_bars)
    checks.append(speed)
    data_sets = _originality_data(item, signal, registered or {}, config, store, stored)
    if isinstance(data_sets, Check):
        checks.append(data_sets)
    else:
        checks.append(
            _originality_check(
                item.name,
                data_sets,
                config.originality_max_r2,
                config.originality_lags,
                shipped=item.origin == "shipped",
            )
        )
    return ValidationReport(item.name, item.origin, item.code_hash, tuple(checks), signal, per_10k)
