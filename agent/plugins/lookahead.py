"""The look-ahead check on the data that is paid for, and the quarantine of strategies it catches.

Every time a third-party strategy's signal is computed over history, `check_lookahead` draws
`strategies.lookahead_samples` bars from the operating system's randomness (`secrets`), so no
plugin can predict them, and recomputes the signal at each from the candles up to that bar
only, in one extra sandboxed child that answers the bars in increasing order and never holds a
later bar than the one it answers (`sandbox.run_plugin_incremental`). The value must equal the
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
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agent.plugins.discovery import DiscoveredStrategy
from agent.plugins.sandbox import SandboxLimits, run_plugin_incremental
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
