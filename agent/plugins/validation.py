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
from agent.errors import PluginError
from agent.market.schema import CANDLE_COLUMNS
from agent.market.synthetic import PLANTED_SERIES_NAME, generate
from agent.plugins.discovery import DiscoveredStrategy, discover, discover_file, find
from agent.plugins.interface import HIDDEN_ATTR, as_signal
from agent.plugins.lookahead import check_lookahead
from agent.plugins.sandbox import SandboxLimits, SignalResult, run_plugin, run_trusted
from agent.plugins.signals import StrategyLike, as_discovered, compute_signals, hidden_refusal
from agent.store import Store

REFERENCE_TIMEFRAME = "1h"
_AFTER_SHAPE = ("determinism", "causality", "speed", "originality")
MIN_OVERLAP_BARS = 30
"""Fewest bars where both signals exist for a correlation to count in the originality check."""


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


def _fresh_markets(
    settings: Settings | StrategiesSettings, store: Store | None
) -> list[tuple[str, pd.DataFrame]]:
    """Return the data the random look-ahead check runs on: a fresh synthetic market longer
    than any stored series (seed and extra length from OS randomness), and the stored market."""
    config = _config(settings)
    longest = max([s.count for s in store.list_series()] if store is not None else [], default=0)
    bars = max(config.reference_bars, longest) + 1 + secrets.randbelow(1_000)
    market = generate(SyntheticSettings(seed=secrets.randbits(31), bars=bars), REFERENCE_TIMEFRAME)
    markets = [
        (f"fresh synthetic data of {bars} bars", _with_hidden(market.candles, market.planted))
    ]
    if store is not None and isinstance(settings, Settings):
        from agent.market.data import default_key

        key = default_key(settings)
        candles = store.read_candles(key)
        if len(candles) >= 2:
            frame = candles[list(CANDLE_COLUMNS)].reset_index(drop=True)
            markets.append((f"the stored market {key}", frame))
    return markets


def _random_causality_check(
    item: DiscoveredStrategy,
    settings: Settings | StrategiesSettings,
    limits: SandboxLimits,
    store: Store | None,
) -> Check | None:
    """Run the paid paths' look-ahead check; None when it passed on every data set."""
    config = _config(settings)
    for label, frame in _fresh_markets(settings, store):
        full = _run(item, [frame], limits)[0]
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


def _originality_check(
    name: str, signal: np.ndarray, registered: Mapping[str, np.ndarray], limit: float
) -> Check:
    best: tuple[float, str] | None = None
    for other_name, other in registered.items():
        if other_name == name or len(other) != len(signal):
            continue
        both = np.isfinite(signal) & np.isfinite(np.asarray(other, dtype="float64"))
        if both.sum() < MIN_OVERLAP_BARS:
            continue
        a, b = signal[both], np.asarray(other, dtype="float64")[both]
        if np.std(a) == 0.0 or np.std(b) == 0.0:
            continue
        corr = float(np.corrcoef(a, b)[0, 1])
        if best is None or abs(corr) > abs(best[0]):
            best = (corr, other_name)
    if best is None:
        return Check("originality", True, "no registered strategy to compare with")
    corr, other_name = best
    if abs(corr) > limit:
        return Check(
            "originality",
            False,
            f"its signal correlates {corr:.3f} with registered strategy {other_name!r} "
            f"(limit {limit:g}): refused as a copy",
        )
    return Check(
        "originality",
        True,
        f"highest correlation {corr:.3f}, with {other_name!r} (limit {limit:g})",
    )


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
        registered: the strategies already registered, as their signals on the reference data
            set (see `reference_signals`) or as strategies to compute them from. One with the
            target's own name (an earlier version) is not compared.
        store: the store whose longest series the fresh look-ahead data must exceed, and whose
            market (with full `Settings`) is checked too.
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
    if causality.passed and not item.trusted:
        causality = _random_causality_check(item, settings, limits, store) or Check(
            "causality",
            True,
            causality.message + f", and at {config.lookahead_samples} random bars of fresh data "
            "recomputed from the candles up to each",
        )
    checks.append(causality)
    elapsed = min(first.elapsed_s, runs[0].elapsed_s) if runs[0].ok else first.elapsed_s
    speed, per_10k = _speed_check(elapsed, bars, config.speed_budget_s_per_10k_bars)
    checks.append(speed)
    if registered is None:
        registered = {}
    elif not isinstance(registered, Mapping):
        registered = reference_signals(registered, config)
    checks.append(
        _originality_check(item.name, signal, registered, config.originality_max_correlation)
    )
    return ValidationReport(item.name, item.origin, item.code_hash, tuple(checks), signal, per_10k)
