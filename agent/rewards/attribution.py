"""Shapley values of players, per bar, with a block-bootstrap standard error.

A game maps a coalition (a set of player indexes) to a value, or to a series of per-bar values
whose sum is the value (the reward epoch's game, `agent.rewards.game`, returns the agent's
per-bar log returns). A player's Shapley value is its marginal contribution v(S ∪ {i}) - v(S)
averaged over every order in which players could join, so the values always sum to
v(all) - v(∅) (efficiency), interchangeable players get the same (symmetry) and a player that
never changes the game's value gets 0 (null player).

Because the Shapley value is linear in the game, applying it to every bar's value separately
gives each player a per-bar contribution series that sums to its value, bar by bar efficient.
The uncertainty of a value is the uncertainty of that sum: `block_bootstrap_se` resamples
blocks of consecutive bars (circularly, with a seed), keeping short-range dependence, and takes
the spread of the resampled sums. An exact Shapley value over a few trades is then no longer
reported as certain: its error is what the bars it was earned on could have been.

Up to `exact_max_players` players every one of the 2^n coalitions is evaluated and the values
are exact; beyond, seeded Monte-Carlo permutation sampling estimates them, and its sampling
error is added to the bootstrap's. Evaluations are memoised by coalition and run on several
processes (forked with the game in place, so the game need not be picklable on Linux), or on an
injected `Spreader` (an `agent.compute.Backend`, such as a Ray cluster): the game is its shared
input, sent once, and each task evaluates one batch of coalitions in order (`evaluate_batch`).
Wherever a coalition is evaluated, its result is the same, and the Shapley values are combined
here in a fixed order, so the values do not depend on where the work ran, bit for bit.
"""

from __future__ import annotations

import math
import multiprocessing
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal, Protocol

import numpy as np

Coalition = frozenset[int]
"""A set of players, by index into the attribution's player list."""
Game = Callable[[Coalition], Any]
"""A characteristic function: coalition -> its value, or its per-bar values (a 1-D array)."""
Progress = Callable[[int, int], None]
"""Called with (evaluations done, evaluations to do) while a batch runs."""
Method = Literal["exact", "monte_carlo"]

DEFAULT_EXACT_MAX_PLAYERS = 10
DEFAULT_SAMPLES = 200
DEFAULT_BOOTSTRAP_SAMPLES = 1000
DEFAULT_BOOTSTRAP_BLOCK = 24
MIN_PARALLEL_EVALUATIONS = 16
"""Batches smaller than this run in-process: starting workers would cost more than it saves."""
PAYS_SECONDS = 2.0
"""Workers start only when the rest of a batch would take longer than this in-process: forking
them, warming their kernel and sending results back costs a few tenths of a second. The same
holds for a spreader: on a local Ray (2 CPUs) a job's first tasks cost about 0.8 s (a worker
imports Agora and loads the kernel from its cache), later ones a few milliseconds each."""
PROBE_EVALUATIONS = 4
"""Evaluations timed in-process before deciding whether workers pay."""
BATCHES_PER_WORKER = 4
"""Batches a spreader's batch is cut into per worker: few enough that a task's overhead (and
reading the game from the object store) is small against its evaluations, enough that a slow
worker does not hold up the end."""
SPREAD_LABEL = "agora-shapley"

_worker_game: Game | None = None


class Spreader(Protocol):
    """Runs `fn(shared, item)` for every item elsewhere and returns the results in order.

    `agent.compute.Backend` is one (the local and the Ray backend); named here so that the
    pure core does not import the compute layer.
    """

    workers: int
    """How many tasks can run at once."""

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        items: Sequence[Any],
        *,
        label: str,
        progress: Progress | None = None,
    ) -> list[Any]: ...


@dataclass(frozen=True)
class Attribution:
    """Each player's Shapley value for one game.

    Attributes:
        players: player names, in index order.
        values: Shapley value per player (exact, or the Monte-Carlo mean).
        std_errors: standard error per player: the block bootstrap's over the bars, plus the
            Monte-Carlo sampling error when sampled (0 for a one-value game solved exactly).
        method: "exact" or "monte_carlo".
        permutations: permutations sampled (0 when exact).
        seed: the sampling seed (None when exact).
        v_all: v(every player).
        v_empty: v(no player).
        evaluations: distinct coalitions evaluated.
        per_bar: [players, bars] each player's contribution at each bar (rows sum to `values`).
        bootstrap: how the standard errors were estimated (samples, block, seed).
        groups: the group structure the values were computed under (players' names).
    """

    players: tuple[str, ...]
    values: tuple[float, ...]
    std_errors: tuple[float, ...]
    method: Method
    permutations: int
    seed: int | None
    v_all: float
    v_empty: float
    evaluations: int
    per_bar: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), compare=False)
    bootstrap: dict[str, Any] = field(default_factory=dict, compare=False)
    groups: tuple[tuple[str, ...], ...] = ()

    def by_name(self) -> dict[str, float]:
        """Return player name -> Shapley value."""
        return dict(zip(self.players, self.values, strict=True))

    def errors_by_name(self) -> dict[str, float]:
        """Return player name -> standard error."""
        return dict(zip(self.players, self.std_errors, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (for the store and `--json`)."""
        return {
            "method": self.method,
            "permutations": self.permutations,
            "seed": self.seed,
            "v_all": self.v_all,
            "v_empty": self.v_empty,
            "evaluations": self.evaluations,
            "bootstrap": dict(self.bootstrap),
            "groups_played": [list(g) for g in self.groups],
            "players": [
                {"name": n, "value": v, "std_error": s}
                for n, v, s in zip(self.players, self.values, self.std_errors, strict=True)
            ],
        }


class CachedGame:
    """A game whose values are memoised by coalition and computed in batches, in parallel.

    Each coalition's result is kept as its per-bar series (a one-value game: one bar) and as
    its value, the exact sum of the series.

    Args:
        game: the characteristic function; pure (same coalition, same value). Picklable when
            `spreader` sends it to other machines.
        workers: processes used for a batch (1: in this process); ignored with a `spreader`.
        min_parallel: batches smaller than this run in this process.
        pays_seconds: the rest of a batch goes off-process only if it would take longer than
            this in this process, judged from the first evaluations' time.
        spreader: where the off-process part of a batch runs, instead of a pool of `workers`
            forked processes: in batches of coalitions, `BATCHES_PER_WORKER` per worker of
            the spreader, each a task `evaluate_batch(game, batch)`. Used whenever it pays,
            even with one worker (a cluster's worker may be another machine).
    """

    def __init__(
        self,
        game: Game,
        *,
        workers: int = 1,
        min_parallel: int = MIN_PARALLEL_EVALUATIONS,
        pays_seconds: float = PAYS_SECONDS,
        spreader: Spreader | None = None,
    ) -> None:
        self.game = game
        self.workers = max(1, int(workers))
        self.min_parallel = min_parallel
        self.pays_seconds = pays_seconds
        self.spreader = spreader
        self.values: dict[Coalition, float] = {}
        self.series: dict[Coalition, np.ndarray] = {}

    def __call__(self, coalition: Iterable[int]) -> float:
        key = frozenset(coalition)
        if key not in self.values:
            self._store(key, self.game(key))
        return self.values[key]

    def _store(self, coalition: Coalition, result: Any) -> None:
        series = _checked(coalition, result)
        self.series[coalition] = series
        self.values[coalition] = math.fsum(series.tolist())

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far."""
        return len(self.values)

    def evaluate(self, coalitions: Iterable[Coalition], progress: Progress | None = None) -> None:
        """Evaluate every coalition not yet known: in this process first (each one is a kernel
        run), then the rest on `workers` processes (or the spreader) if the first ones show
        that it pays."""
        todo = [c for c in dict.fromkeys(frozenset(c) for c in coalitions) if c not in self.values]
        done = 0
        started = time.perf_counter()
        while done < len(todo) and not self._workers_pay(done, len(todo), started):
            self(todo[done])
            done += 1
            if progress is not None:
                progress(done, len(todo))
        rest = todo[done:]
        if not rest:
            return
        report = None if progress is None else lambda n: progress(done + n, len(todo))
        if self.spreader is None:
            self._on_pool(rest, report)
        else:
            self._on_spreader(self.spreader, rest, report)

    def _on_pool(self, rest: list[Coalition], report: Callable[[int], None] | None) -> None:
        """Evaluate `rest` on a pool of forked processes, each holding the game."""
        workers = min(self.workers, len(rest))
        chunksize = max(1, len(rest) // (workers * 8))
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_context(),
            initializer=_install_game,
            initargs=(self.game,),
        ) as pool:
            results = pool.map(_evaluate_installed, rest, chunksize=chunksize)
            for done, (coalition, value) in enumerate(zip(rest, results, strict=True), 1):
                self._store(coalition, value)
                if report is not None:
                    report(done)

    def _on_spreader(
        self, spreader: Spreader, rest: list[Coalition], report: Callable[[int], None] | None
    ) -> None:
        """Evaluate `rest` as tasks of `spreader`, one batch of coalitions per task."""
        parts = min(len(rest), max(1, spreader.workers) * BATCHES_PER_WORKER)
        split = np.array_split(np.arange(len(rest)), parts)  # contiguous, nearly equal
        batches = [[rest[i] for i in part.tolist()] for part in split]
        results = spreader.map(
            evaluate_batch,
            self.game,
            batches,
            label=SPREAD_LABEL,
            progress=None if report is None else lambda k, n: report(len(rest) * k // n),
        )
        for batch, values in zip(batches, results, strict=True):
            for coalition, value in zip(batch, values, strict=True):
                self._store(coalition, value)

    def _workers_pay(self, done: int, total: int, started: float) -> bool:
        """Whether the rest of a batch should go to workers (judged after a few evaluations)."""
        if (self.workers == 1 and self.spreader is None) or total - done < self.min_parallel:
            return False
        if done < min(PROBE_EVALUATIONS, total):
            return self.pays_seconds <= 0.0
        per_evaluation = (time.perf_counter() - started) / done
        return per_evaluation * (total - done) > self.pays_seconds


def _context() -> Any:
    """Fork where possible: workers inherit the game without pickling it."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _install_game(game: Game) -> None:
    global _worker_game
    _worker_game = game
    torch = sys.modules.get("torch")
    if torch is not None:  # a forked child must not reuse the parent's OpenMP pool
        torch.set_num_threads(1)


def _evaluate_installed(coalition: Coalition) -> Any:
    assert _worker_game is not None, "worker started without a game"
    return _worker_game(coalition)


def evaluate_batch(game: Game, coalitions: Sequence[Coalition]) -> list[Any]:
    """Return the game's result for each coalition, in order: one spreader task."""
    return [game(coalition) for coalition in coalitions]


def _checked(coalition: Coalition, value: Any) -> np.ndarray:
    """Return a game's result as a 1-D float64 series (a number: a series of one)."""
    series = np.atleast_1d(np.asarray(value, dtype="float64"))
    if series.ndim != 1:
        raise ValueError(f"v({sorted(coalition)}) has shape {series.shape}: expected a series")
    if not np.isfinite(series).all():
        raise ValueError(f"v({sorted(coalition)}) is {value}: a game must return finite values")
    return series


# --- Shapley values from evaluated coalitions (pure) -------------------------------------------


def shapley_weights(n_players: int) -> list[float]:
    """Return w[s] = s! (n - s - 1)! / n!, the weight of a coalition of size s without i."""
    n = n_players
    return [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]


def all_coalitions(n_players: int) -> list[Coalition]:
    """Return every subset of range(n_players), smallest first."""
    masks = sorted(range(1 << n_players), key=lambda m: (m.bit_count(), m))
    return [frozenset(i for i in range(n_players) if m >> i & 1) for m in masks]


def exact_shapley(values: Mapping[Coalition, float], n_players: int) -> list[float]:
    """Return every player's exact Shapley value from v of all 2^n coalitions.

    Raises:
        KeyError: a coalition is missing from `values`.
    """
    weights = shapley_weights(n_players)
    by_mask = [0.0] * (1 << n_players)
    for mask in range(1 << n_players):
        by_mask[mask] = values[frozenset(i for i in range(n_players) if mask >> i & 1)]
    terms: list[list[float]] = [[] for _ in range(n_players)]
    for mask, v in enumerate(by_mask):
        size = mask.bit_count()
        for i in range(n_players):
            if not mask >> i & 1:
                terms[i].append(weights[size] * (by_mask[mask | 1 << i] - v))
    return [math.fsum(t) for t in terms]


def sample_permutations(n_players: int, samples: int, seed: int) -> np.ndarray:
    """Return `samples` seeded random orders of the players, one per row."""
    rng = np.random.default_rng(seed)
    return np.array([rng.permutation(n_players) for _ in range(samples)], dtype=np.int64).reshape(
        samples, n_players
    )


Groups = Sequence[Sequence[int]]
"""A partition of the players into groups, each group's members in priority order."""


def singletons(n_players: int) -> list[list[int]]:
    """Return the partition where every player is its own group (the plain Shapley value)."""
    return [[i] for i in range(n_players)]


def grouped_coalitions(groups: Groups) -> list[Coalition]:
    """Return every coalition the exact grouped value needs (see `grouped_exact`)."""
    needed: dict[Coalition, None] = {}
    for index, group in enumerate(groups):
        others = [j for j in range(len(groups)) if j != index]
        for size in range(len(others) + 1):
            for subset in combinations(others, size):
                base = frozenset(m for j in subset for m in groups[j])
                needed[base] = None
                for k in range(1, len(group) + 1):
                    needed[base | frozenset(group[:k])] = None
    return list(needed)


def grouped_exact(
    values: Mapping[Coalition, float],
    series: Mapping[Coalition, np.ndarray],
    groups: Groups,
    n_players: int,
) -> tuple[list[float], np.ndarray]:
    """Return every player's exact value and per-bar contributions under a group structure.

    Groups play a Shapley game among themselves (a group joins with all its members); inside a
    group, members join in priority order, each credited with what it adds to the members
    before it. So a member's value is Σ over coalitions S of other groups of
    w(|S|) · [v(S ∪ its prefix) - v(S ∪ the prefix before it)], with the Shapley weights over
    the number of groups. With every player its own group, this is the Shapley value.
    """
    weights = shapley_weights(len(groups))
    bars = len(series[frozenset()])
    terms: list[list[float]] = [[] for _ in range(n_players)]
    per_bar = np.zeros((n_players, bars))
    for index, group in enumerate(groups):
        others = [j for j in range(len(groups)) if j != index]
        for size in range(len(others) + 1):
            weight = weights[size]
            for subset in combinations(others, size):
                before = frozenset(m for j in subset for m in groups[j])
                for member in group:
                    after = before | {member}
                    terms[member].append(weight * (values[after] - values[before]))
                    per_bar[member] += weight * (series[after] - series[before])
                    before = after
    return [math.fsum(t) for t in terms], per_bar


def grouped_permutations(
    values: Mapping[Coalition, float],
    series: Mapping[Coalition, np.ndarray],
    groups: Groups,
    orders: np.ndarray,
    n_players: int,
) -> tuple[list[float], list[float], np.ndarray]:
    """Return (mean value, its sampling error, mean per-bar contribution) over group orders.

    Each row of `orders` is an order of the groups; members join in priority order inside.
    """
    samples = len(orders)
    bars = len(series[frozenset()])
    marginals = np.zeros((samples, n_players))
    per_bar = np.zeros((n_players, bars))
    for row, order in enumerate(orders.tolist()):
        before: Coalition = frozenset()
        for index in order:
            for member in groups[index]:
                after = before | {member}
                marginals[row, member] = values[after] - values[before]
                per_bar[member] += series[after] - series[before]
                before = after
    means = marginals.mean(axis=0)
    errors = (
        marginals.std(axis=0, ddof=1) / math.sqrt(samples)
        if samples > 1
        else np.full(n_players, np.inf)
    )
    return means.tolist(), errors.tolist(), per_bar / max(samples, 1)


def group_prefixes(groups: Groups, orders: np.ndarray) -> list[Coalition]:
    """Return every coalition the group orders pass through, member by member (∅ included)."""
    needed: dict[Coalition, None] = {frozenset(): None}
    for order in orders.tolist():
        before: Coalition = frozenset()
        for index in order:
            for member in groups[index]:
                before = before | {member}
                needed[before] = None
    return list(needed)


def block_bootstrap_se(per_bar: np.ndarray, *, block: int, samples: int, seed: int) -> np.ndarray:
    """Return each row's standard error of its sum by a circular block bootstrap over the bars.

    Each resample concatenates blocks of `block` consecutive bars, starting at seeded random
    bars and wrapping around the end, until it has as many bars as the data; the standard error
    is the standard deviation of the resampled sums. Blocks keep the dependence between nearby
    bars (a position held over several bars, volatility clusters) inside each resample.

    Args:
        per_bar: [rows, bars] values to sum.
        block: bars per block (clipped to a quarter of the bars, so that resamples vary).
        samples: resamples (at least 2).
        seed: the resampling seed (same seed, same errors).
    """
    per_bar = np.atleast_2d(np.asarray(per_bar, dtype="float64"))
    rows, bars = per_bar.shape
    if bars < 2 or rows == 0:
        return np.zeros(rows)
    if samples < 2:
        raise ValueError(f"bootstrap samples is {samples}; expected at least 2")
    block = max(1, min(int(block), bars // 4))  # at least 4 blocks: a resample must vary
    blocks = -(-bars // block)
    starts = np.random.default_rng(seed).integers(0, bars, size=(samples, blocks))
    index = (starts[:, :, None] + np.arange(block)) % bars
    index = index.reshape(samples, blocks * block)[:, :bars]
    sums = np.stack([per_bar[r][index].sum(axis=1) for r in range(rows)])
    return np.asarray(sums.std(axis=1, ddof=1))


def shapley(
    game: Game | CachedGame,
    players: Sequence[str],
    *,
    exact_max_players: int = DEFAULT_EXACT_MAX_PLAYERS,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    workers: int = 1,
    spreader: Spreader | None = None,
    progress: Progress | None = None,
    bootstrap_samples: int = DEFAULT_BOOTSTRAP_SAMPLES,
    bootstrap_block: int = DEFAULT_BOOTSTRAP_BLOCK,
    bootstrap_seed: int = 0,
    groups: Groups | None = None,
) -> Attribution:
    """Return the Shapley value of every player of `game`, per bar, with standard errors.

    Args:
        game: v(coalition of player indexes), a number or a per-bar series; wrapped in a
            `CachedGame` unless it is one.
        players: player names; player i is `players[i]`.
        exact_max_players: enumerate every coalition up to this many players.
        samples: permutations sampled beyond that (at least 2, for a standard error).
        seed: the sampling seed (same seed, same estimate).
        workers: processes evaluating coalitions.
        spreader: where coalitions are evaluated off-process instead (see `CachedGame`).
            `workers` and `spreader` apply to a game wrapped here; a `CachedGame` keeps its own.
        progress: called with (done, total) evaluations.
        bootstrap_samples: block-bootstrap resamples for the standard errors.
        bootstrap_block: bars per bootstrap block.
        bootstrap_seed: the resampling seed.
        groups: a partition of the players (each group in priority order): groups play the
            Shapley game, members join their group in order (`grouped_exact`); default: every
            player its own group, the plain Shapley value.

    Raises:
        ValueError: `samples` below 2 when sampling is needed, or a non-finite v.
    """
    cached = (
        game
        if isinstance(game, CachedGame)
        else CachedGame(game, workers=workers, spreader=spreader)
    )
    n = len(players)
    partition = singletons(n) if groups is None else [list(g) for g in groups]
    if sorted(m for g in partition for m in g) != list(range(n)):
        raise ValueError(f"groups {partition} are not a partition of the {n} players")
    if len(partition) <= exact_max_players:
        cached.evaluate([*grouped_coalitions(partition), frozenset(range(n))], progress)
        values, per_bar = grouped_exact(cached.values, cached.series, partition, n)
        sampling = [0.0] * n
        method, permutations, used_seed = "exact", 0, None
    else:
        if samples < 2:
            raise ValueError(f"shapley samples is {samples}; Monte Carlo needs at least 2")
        orders = sample_permutations(len(partition), samples, seed)
        cached.evaluate([*group_prefixes(partition, orders), frozenset(range(n))], progress)
        values, sampling, per_bar = grouped_permutations(
            cached.values, cached.series, partition, orders, n
        )
        method, permutations, used_seed = "monte_carlo", samples, seed
    over_bars = block_bootstrap_se(
        per_bar, block=bootstrap_block, samples=bootstrap_samples, seed=bootstrap_seed
    )
    errors = [math.hypot(b, m) for b, m in zip(over_bars.tolist(), sampling, strict=True)]
    return Attribution(
        players=tuple(players),
        values=tuple(values),
        std_errors=tuple(errors),
        method=method,  # type: ignore[arg-type]
        permutations=permutations,
        seed=used_seed,
        v_all=cached(frozenset(range(n))),
        v_empty=cached(frozenset()),
        evaluations=cached.evaluations,
        per_bar=per_bar,
        groups=tuple(tuple(players[m] for m in g) for g in partition),
        bootstrap={
            "samples": bootstrap_samples,
            "block_bars": bootstrap_block,
            "seed": bootstrap_seed,
            "bars": int(per_bar.shape[1]) if per_bar.ndim == 2 else 0,
        },
    )
