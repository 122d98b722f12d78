"""The look-ahead check on the data that is paid for, and the quarantine of strategies it catches.

Every time a third-party strategy's signal is computed over history, `check_lookahead` draws
`strategies.lookahead_samples` bars from the operating system's randomness (`secrets`), so no
plugin can predict them, and recomputes the signal at each from the candles up to that bar
only, in one extra sandboxed child that answers the bars in increasing order and never holds a
later bar than the one it answers (`run_plugin_incremental`). The value must equal the
full-history value at that bar (NaN equals NaN). A strategy that looks ahead at a fraction p of
the bars escapes n samples with probability (1 - p)^n: 460 samples catch p = 1 % with
probability 0.99.

Equality is checked to a relative tolerance of 1e-9 (absolute 1e-12): a causal computation
over a longer series repeats the same float operations at every bar up to the cut, except that
a reduction whose blocking depends on the length (numpy's pairwise sums) may reassociate; that
moves a value by a few ulps times the log of the length, about 1e-13 relative for a million
bars. A look-ahead that moves a value by less than 1e-9 of itself cannot change a decision.

A strategy caught is quarantined by its code hash (`quarantine` table): `compute_signals` masks
its signal everywhere with the recorded reason, reward epochs exclude it and `agora strategies
list` shows it as QUARANTINED with the first offending bar.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from agent.errors import PluginError
from agent.plugins import _child
from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.sandbox import (
    PluginLocation,
    SandboxLimits,
    _Child,
    _error_reason,
    _Failed,
    _hidden_for,
    _lacks,
    _location_header,
    _missing_hidden,
)
from agent.store import Store

QUARANTINED = "quarantined"
"""First word of the reason of a signal masked because its strategy is quarantined."""
RTOL = 1e-9
ATOL = 1e-12


@dataclass(frozen=True)
class LookaheadVerdict:
    """The outcome of one look-ahead check.

    Attributes:
        samples: bars recomputed (the sample size actually used).
        first_bar: the first sampled bar whose value differed, or None.
        full_value, cut_value: the two values at `first_bar`.
        error: why the check could not run (the strategy failed on a shorter history), or None.
        elapsed_s: wall time of the extra sandboxed run.
    """

    samples: int
    first_bar: int | None
    full_value: float | None = None
    cut_value: float | None = None
    error: str | None = None
    elapsed_s: float = 0.0

    @property
    def caught(self) -> bool:
        return self.first_bar is not None

    def reason(self, open_time: np.ndarray | None = None) -> str:
        """Return the masked signal's reason: the first offending bar and the two values."""
        if self.first_bar is None:
            return f"look-ahead check could not run: {self.error}"
        when = ""
        if open_time is not None and self.first_bar < len(open_time):
            stamp = pd.Timestamp(int(open_time[self.first_bar]), unit="ms", tz="UTC")
            when = f" ({stamp:%Y-%m-%d %H:%M} UTC)"
        return (
            f"{QUARANTINED}: looks ahead: its signal at bar {self.first_bar}{when} is "
            f"{self.full_value!r} on the full history but {self.cut_value!r} from the candles "
            f"up to that bar only ({self.samples} random bars checked)"
        )


@dataclass(frozen=True)
class CutValues:
    """A strategy's signal at each cut point, each computed from the candles up to that cut.

    Attributes:
        name: the strategy's name.
        cuts: the bars (row positions), increasing.
        values: the value at each cut answered, in order (NaN allowed); shorter than `cuts`
            when the run failed.
        ok: every cut was answered.
        reason: why not, or None.
        elapsed_s: wall time of the whole run, measured here.
    """

    name: str
    cuts: np.ndarray
    values: np.ndarray
    ok: bool
    reason: str | None
    elapsed_s: float


def run_plugin_incremental(
    location: PluginLocation,
    frame: pd.DataFrame,
    cuts: Sequence[int],
    *,
    name: str,
    params: Mapping[str, Any] | None = None,
    hidden_inputs: Sequence[str] = (),
    limits: SandboxLimits | None = None,
    expected_sha256: str | None = None,
) -> CutValues:
    """Compute an untrusted strategy's signal at each cut from the candles up to it only.

    One sandboxed child answers every cut, in increasing order: it is sent the bars after the
    previous cut up to this one only once the previous cut is answered, so it never holds a bar
    later than the cut it answers, and the cost is one process and one computation per cut.

    Args:
        location, name, params, hidden_inputs, limits, expected_sha256: as in `run_plugin`.
        frame: the full candle frame (hidden series in `attrs[HIDDEN_ATTR]`).
        cuts: row positions in `frame`; sorted and made unique here.
    """
    limits = limits or SandboxLimits()
    points = np.unique(np.asarray(cuts, dtype="int64"))
    started = time.monotonic()
    answered: list[float] = []

    def result(reason: str | None) -> CutValues:
        values = np.asarray(answered, dtype="float64")
        return CutValues(name, points, values, reason is None, reason, time.monotonic() - started)

    if len(points) and (points[0] < 0 or points[-1] >= len(frame)):
        return result(f"cut points outside the {len(frame)} candles")
    lacking = _missing_hidden(frame, hidden_inputs)
    if lacking:
        return result(_lacks(lacking))
    try:
        header, _ = _location_header(location, expected_sha256)
    except _Failed as e:
        return result(str(e))
    hidden = _hidden_for(frame, hidden_inputs)
    arrays = _child.frame_arrays(frame, hidden)
    request = {
        "mode": "incremental",
        "location": header,
        "params": dict(params or {}),
        "frames": [],
        "hidden": sorted(hidden),
        "cuts": len(points),
    }
    try:
        child = _Child(limits, len(points), location)
    except OSError as e:
        return result(f"could not start the sandbox: {e}")
    except PluginError as e:
        return result(str(e))
    try:
        child.send(request, [], 1_024, keep_open=True)
        reply, _ = child.receive()
        if reply.get("type") != "ready":
            return result(_error_reason(reply, limits))
        if reply.get("name") != name:
            return result(
                f"loads as {str(reply.get('name'))[:60]!r}, not {name!r}: its code changed "
                "since it was discovered"
            )
        sent = 0
        for cut in points.tolist():
            child.send_chunk({"cut": cut}, [array[sent : cut + 1] for array in arrays])
            sent = cut + 1
            reply, payload = child.receive()
            if reply.get("type") != "point" or not reply.get("ok"):
                return result(f"at bar {cut}: {_error_reason(reply, limits)}")
            if len(payload) != 8:  # exactly one raw little-endian float64, nothing to parse
                return result(f"sent a malformed value at bar {cut}: {len(payload)} bytes, not 8")
            answered.append(float(np.frombuffer(payload, dtype="<f8")[0]))
    except _Failed as e:
        return result(str(e))
    finally:
        child.close()
    return result(None)


def draw_cuts(bars: int, samples: int, warmup_bars: int = 0) -> np.ndarray:
    """Return up to `samples` distinct bars in [warm-up, bars - 1), drawn from OS randomness.

    The last bar is left out: the full-history run already computed it from the candles up to
    it. Warm-up bars are not sampled; their values are not used (see `compute_signals`).
    """
    low = min(max(warmup_bars, 0), max(bars - 2, 0))
    population = range(low, max(bars - 1, low))
    count = min(samples, len(population))
    chosen = secrets.SystemRandom().sample(population, count)
    return np.array(sorted(chosen), dtype="int64")


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore"):
        return both_nan | np.isclose(a, b, rtol=RTOL, atol=ATOL)


def check_lookahead(
    item: DiscoveredStrategy,
    frame: pd.DataFrame,
    full_values: np.ndarray,
    *,
    samples: int,
    limits: SandboxLimits,
    cuts: np.ndarray | None = None,
) -> LookaheadVerdict:
    """Recompute an untrusted strategy's signal at random bars from the candles up to each.

    Args:
        item: a discovered third-party strategy (with a code location).
        frame: the candles its signal was computed on (hidden series in attrs, if allowed).
        full_values: its signal on the whole frame (NaN in the warm-up).
        samples: how many bars to recompute (`strategies.lookahead_samples`).
        limits: the sandbox limits.
        cuts: the bars to recompute (default: drawn by `draw_cuts`; tests may pin them).
    """
    assert item.info is not None and item.location is not None
    if cuts is None:
        cuts = draw_cuts(len(frame), samples, item.info.warmup_bars)
    if not len(cuts):
        return LookaheadVerdict(0, None)
    run = run_plugin_incremental(
        item.location,
        frame,
        cuts.tolist(),
        name=item.name,
        params=item.params,
        hidden_inputs=item.info.hidden_inputs,
        limits=limits,
        expected_sha256=item.code_hash if item.location.kind == "file" else None,
    )
    answered = run.cuts[: len(run.values)]
    differ = ~_same(full_values[answered], run.values)
    if differ.any():
        at = int(np.flatnonzero(differ)[0])
        bar = int(answered[at])
        return LookaheadVerdict(
            len(answered), bar, float(full_values[bar]), float(run.values[at]), None, run.elapsed_s
        )
    if not run.ok:
        return LookaheadVerdict(len(answered), None, error=run.reason, elapsed_s=run.elapsed_s)
    return LookaheadVerdict(len(run.cuts), None, elapsed_s=run.elapsed_s)


# --- the quarantine --------------------------------------------------------------------------
@dataclass(frozen=True)
class Quarantine:
    """One strategy code caught looking ahead, as recorded in the store."""

    code_hash: str
    strategy: str
    first_bar: int
    first_bar_ms: int | None
    series: str | None
    source: str
    reason: str
    detected_ms: int


def record_quarantine(
    store: Store,
    item: DiscoveredStrategy,
    verdict: LookaheadVerdict,
    reason: str,
    *,
    series: str | None,
    first_bar_ms: int | None,
    source: str,
) -> None:
    """Record that `item`'s code looks ahead (the first detection is kept)."""
    assert verdict.first_bar is not None
    with store.transaction() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO quarantine (code_hash, strategy, first_bar, first_bar_ms, "
            "series, source, reason, detected_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                item.code_hash,
                item.info.name if item.info else item.name,
                verdict.first_bar,
                first_bar_ms,
                series,
                source,
                reason,
                int(time.time() * 1000),
            ],
        )


def read_quarantine(store: Store) -> dict[str, Quarantine]:
    """Return every quarantined strategy code, by code hash."""
    rows = store.db.execute(
        "SELECT code_hash, strategy, first_bar, first_bar_ms, series, source, reason, "
        "detected_ms FROM quarantine"
    ).fetchall()
    return {row[0]: Quarantine(*row) for row in rows}


def quarantined_names(store: Store, items: list[DiscoveredStrategy]) -> set[str]:
    """Return the names (columns) of `items` whose code is quarantined."""
    hashes = read_quarantine(store)
    return {item.name for item in items if item.code_hash and item.code_hash in hashes}
