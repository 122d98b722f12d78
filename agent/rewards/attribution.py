"""Shapley values of strategies: how much each one's signal is worth to the agent in an epoch.

The game: players are strategies, and v(S) is the agent's net result over the epoch when only
the signals of the strategies in S are real; every other strategy's signal is replaced by its
**null** (`null_signals`): the strategy's own median value, with its real availability mask.
The policy is memoryless (an MLP over one bar's observation), so the null shows it only inputs
it saw in training, whatever it was trained with: each strategy's most typical value, available
where it really was; what the null removes is the signal's variation with the market, which is
the strategy's information. (Zeroing the signal and its mask instead, as before, shows the
policy an input it never saw unless it was trained with strategy dropout, and dropout costs the
agent its edge: docs/learning.md.)
A strategy's Shapley value is its marginal contribution v(S ∪ {i}) - v(S)
averaged over every order in which strategies could join, so the values always sum to
v(all) - v(∅) (efficiency), identical strategies get the same (symmetry) and a strategy that
never changes the agent's actions gets 0 (null player).

Up to `exact_max_players` players every one of the 2^n coalitions is evaluated and the values
are exact; beyond, seeded Monte-Carlo permutation sampling estimates them and reports each
player's standard error. Evaluations are memoised by coalition and run on several processes
(forked with the game in place, so the game need not be picklable on Linux).
"""

from __future__ import annotations

import math
import multiprocessing
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from agent.env.rollout import ModelPolicy, rollout
from agent.env.trading_env import EnvConfig, MarketData

Coalition = frozenset[int]
"""A set of players, by index into the attribution's player list."""
Game = Callable[[Coalition], float]
"""A characteristic function: coalition -> the agent's result with only those players."""
Progress = Callable[[int, int], None]
"""Called with (evaluations done, evaluations to do) while a batch runs."""
Metric = Literal["log_return", "value_change"]
Method = Literal["exact", "monte_carlo"]

DEFAULT_EXACT_MAX_PLAYERS = 10
DEFAULT_SAMPLES = 200
MIN_PARALLEL_EVALUATIONS = 16
"""Batches smaller than this run in-process: starting workers would cost more than it saves."""

_worker_game: Game | None = None


@dataclass(frozen=True)
class Attribution:
    """Each player's Shapley value for one game.

    Attributes:
        players: player names, in index order.
        values: Shapley value per player (exact, or the Monte-Carlo mean).
        std_errors: standard error per player (0 when exact).
        method: "exact" or "monte_carlo".
        permutations: permutations sampled (0 when exact).
        seed: the sampling seed (None when exact).
        v_all: v(every player).
        v_empty: v(no player).
        evaluations: distinct coalitions evaluated.
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

    def by_name(self) -> dict[str, float]:
        """Return player name -> Shapley value."""
        return dict(zip(self.players, self.values, strict=True))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready description (for the store and `--json`)."""
        return {
            "method": self.method,
            "permutations": self.permutations,
            "seed": self.seed,
            "v_all": self.v_all,
            "v_empty": self.v_empty,
            "evaluations": self.evaluations,
            "players": [
                {"name": n, "value": v, "std_error": s}
                for n, v, s in zip(self.players, self.values, self.std_errors, strict=True)
            ],
        }


class CachedGame:
    """A game whose values are memoised by coalition and computed in batches, in parallel.

    Args:
        game: the characteristic function; pure (same coalition, same value).
        workers: processes used for a batch (1: in this process).
        min_parallel: batches smaller than this run in this process.
    """

    def __init__(
        self, game: Game, *, workers: int = 1, min_parallel: int = MIN_PARALLEL_EVALUATIONS
    ) -> None:
        self.game = game
        self.workers = max(1, int(workers))
        self.min_parallel = min_parallel
        self.values: dict[Coalition, float] = {}

    def __call__(self, coalition: Iterable[int]) -> float:
        key = frozenset(coalition)
        if key not in self.values:
            self.values[key] = _checked(key, self.game(key))
        return self.values[key]

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far."""
        return len(self.values)

    def evaluate(self, coalitions: Iterable[Coalition], progress: Progress | None = None) -> None:
        """Evaluate every coalition not yet known, on `workers` processes when worth it."""
        todo = [c for c in dict.fromkeys(frozenset(c) for c in coalitions) if c not in self.values]
        if not todo:
            return
        if self.workers == 1 or len(todo) < self.min_parallel:
            for done, coalition in enumerate(todo, start=1):
                self(coalition)
                if progress is not None:
                    progress(done, len(todo))
            return
        workers = min(self.workers, len(todo))
        chunksize = max(1, len(todo) // (workers * 8))
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=_context(),
            initializer=_install_game,
            initargs=(self.game,),
        ) as pool:
            results = pool.map(_evaluate_installed, todo, chunksize=chunksize)
            for done, (coalition, value) in enumerate(zip(todo, results, strict=True), start=1):
                self.values[coalition] = _checked(coalition, value)
                if progress is not None:
                    progress(done, len(todo))


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


def _evaluate_installed(coalition: Coalition) -> float:
    assert _worker_game is not None, "worker started without a game"
    return float(_worker_game(coalition))


def _checked(coalition: Coalition, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"v({sorted(coalition)}) is {value}: a game must return finite values")
    return value


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


def permutation_prefixes(permutations: np.ndarray) -> list[Coalition]:
    """Return every coalition the permutations pass through (∅ included), without repeats."""
    needed: dict[Coalition, None] = {frozenset(): None}
    for order in permutations.tolist():
        for k in range(1, len(order) + 1):
            needed[frozenset(order[:k])] = None
    return list(needed)


def permutation_shapley(
    values: Mapping[Coalition, float], permutations: np.ndarray
) -> tuple[list[float], list[float]]:
    """Return (mean marginal contribution, its standard error) per player over `permutations`.

    Each permutation's marginals sum to v(all) - v(∅), so the means keep efficiency exactly.
    """
    samples, n = permutations.shape
    marginals = np.zeros((samples, n))
    for row, order in enumerate(permutations.tolist()):
        members: set[int] = set()
        previous = values[frozenset()]
        for player in order:
            members.add(player)
            current = values[frozenset(members)]
            marginals[row, player] = current - previous
            previous = current
    means = marginals.mean(axis=0)
    errors = (
        marginals.std(axis=0, ddof=1) / math.sqrt(samples) if samples > 1 else np.full(n, np.inf)
    )
    return means.tolist(), errors.tolist()


def shapley(
    game: Game | CachedGame,
    players: Sequence[str],
    *,
    exact_max_players: int = DEFAULT_EXACT_MAX_PLAYERS,
    samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    workers: int = 1,
    progress: Progress | None = None,
) -> Attribution:
    """Return the Shapley value of every player of `game`.

    Args:
        game: v(coalition of player indexes); wrapped in a `CachedGame` unless it is one.
        players: player names; player i is `players[i]`.
        exact_max_players: enumerate every coalition up to this many players.
        samples: permutations sampled beyond that (at least 2, for a standard error).
        seed: the sampling seed (same seed, same estimate).
        workers: processes evaluating coalitions.
        progress: called with (done, total) evaluations.

    Raises:
        ValueError: `samples` below 2 when sampling is needed, or a non-finite v.
    """
    cached = game if isinstance(game, CachedGame) else CachedGame(game, workers=workers)
    n = len(players)
    if n <= exact_max_players:
        cached.evaluate(all_coalitions(n), progress)
        values = exact_shapley(cached.values, n)
        errors, method, permutations, used_seed = [0.0] * n, "exact", 0, None
    else:
        if samples < 2:
            raise ValueError(f"shapley samples is {samples}; Monte Carlo needs at least 2")
        orders = sample_permutations(n, samples, seed)
        cached.evaluate([*permutation_prefixes(orders), frozenset(range(n))], progress)
        values, errors = permutation_shapley(cached.values, orders)
        method, permutations, used_seed = "monte_carlo", samples, seed
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
    )


# --- the epoch game: the policy re-run with strategies masked --------------------------------


@dataclass(frozen=True)
class EpisodeOutcome:
    """Portfolio value at the first decision and after the last one, in quote currency."""

    value_start: float
    value_end: float
    decisions: int


@dataclass(frozen=True)
class EpochGame:
    """v(S) for one epoch: the policy run over the epoch with only the strategies in S real.

    Picklable when `predict` is. Every other strategy shows its null (`null_signals`);
    strategies of the data that are not players show their null in every evaluation.

    Attributes:
        data: the market, cut to the epoch plus the policy's look-back.
        predict: observation -> action (deterministic).
        env_config: the environment the policy expects (no dropout).
        start: first decision bar in `data`.
        end: final valuation bar in `data` (decisions at start..end-1).
        columns: the data column of each player.
        names: player names.
        metric: "log_return" (log of end / start value) or "value_change" (in quote).
    """

    data: MarketData
    predict: Callable[[np.ndarray], Any]
    env_config: EnvConfig
    start: int
    end: int
    columns: tuple[int, ...]
    names: tuple[str, ...]
    metric: Metric = "log_return"
    null: MarketData | None = None
    """The data with every strategy shown as its null (`null_signals` over the whole history;
    computed over the epoch's window alone when not given)."""

    def __post_init__(self) -> None:
        if self.null is None:
            object.__setattr__(self, "null", null_signals(self.data))

    def __call__(self, coalition: Coalition) -> float:
        outcome = self.outcome(coalition)
        if self.metric == "value_change":
            return outcome.value_end - outcome.value_start
        if outcome.value_end <= 0:
            return math.log(1e-12)
        return math.log(outcome.value_end / outcome.value_start)

    def real(self, coalition: Coalition) -> np.ndarray:
        """Return which strategies of the data show their real signal for a coalition."""
        mask = np.zeros(self.data.n_strategies, dtype=bool)
        for player in coalition:
            mask[self.columns[player]] = True
        return mask

    def data_for(self, coalition: Coalition) -> MarketData:
        """Return the epoch's data with every strategy outside the coalition shown as its null."""
        real = self.real(coalition)
        if real.all():
            return self.data
        assert self.null is not None
        return replace(
            self.data,
            signals=np.where(real, self.data.signals, self.null.signals),
            mask=np.where(real, self.data.mask, self.null.mask),
        )

    def outcome(self, coalition: Coalition) -> EpisodeOutcome:
        """Run the policy over the epoch with the coalition real (the one rollout)."""
        policy = ModelPolicy("epoch", self.predict, self.env_config)
        result = rollout(self.data_for(coalition), policy, self.env_config, self.start, self.end)
        return EpisodeOutcome(float(result.equity[0]), float(result.equity[-1]), result.decisions)


def null_signals(data: MarketData) -> MarketData:
    """Return `data` with every strategy's signal replaced by its null: its own median.

    For each strategy, every bar where its signal is available shows the median of its
    available values over the whole data; the mask is unchanged (a warm-up stays a warm-up).
    The policy is memoryless (it sees one bar's signals at a time), so each observation it is
    shown is one it could have been shown in training: the strategy's most typical value, with
    its real availability. What is lost is the signal's variation with the market, which is
    the strategy's information.
    """
    signals = np.array(data.signals, copy=True)
    for column in range(data.n_strategies):
        available = data.mask[:, column]
        if available.any():
            values = data.signals[available, column]
            signals[available, column] = np.sort(values)[(len(values) - 1) // 2]
    return replace(data, signals=signals)


def evaluate_epoch(
    policy: Any,
    data: MarketData,
    start: int,
    end: int,
    names: Sequence[str] | None = None,
    *,
    env_config: EnvConfig | None = None,
    metric: Metric = "log_return",
) -> EpochGame:
    """Return the characteristic function of the epoch of decisions at bars [start, end).

    Args:
        policy: a callable observation -> action, or an object with `predict` and
            `env_config` (a `ModelPolicy` or a loaded model).
        data: the market with every strategy's signal (the columns the policy was trained on).
        start: first decision bar.
        end: the bar after the last decision; its close values the epoch.
        names: the players (strategies of `data`); default: every strategy.
        env_config: the environment to run in; default: the policy's, else `EnvConfig()`.
        metric: what v measures (see `EpochGame`).

    Raises:
        ValueError: an unknown strategy name, or a window outside the data.
    """
    predict = policy.predict if hasattr(policy, "env_config") else policy
    base = env_config or getattr(policy, "env_config", None) or EnvConfig()
    names = tuple(data.strategy_names if names is None else names)
    unknown = [n for n in names if n not in data.strategy_names]
    if unknown:
        raise ValueError(f"strategies {unknown} are not in the data ({list(data.strategy_names)})")
    lookback = base.lookback_bars
    if not (lookback - 1 <= start < end <= data.bars - 1):
        raise ValueError(
            f"epoch window [{start}, {end}) must lie within [{lookback - 1}, {data.bars - 1}] "
            f"(look-back {lookback}, {data.bars} bars)"
        )
    offset = start - (lookback - 1)
    window = data.window(offset, end + 1)
    config = replace(base, first_bar=lookback - 1, strategy_dropout=0.0)
    return EpochGame(
        null=null_signals(data).window(offset, end + 1),
        data=window,
        predict=predict,
        env_config=config,
        start=start - offset,
        end=end - offset,
        columns=tuple(data.strategy_names.index(n) for n in names),
        names=names,
        metric=metric,
    )
