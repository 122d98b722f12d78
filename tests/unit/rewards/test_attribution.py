"""Shapley attribution: the axioms, a hand-computed game, Monte Carlo against exact, epochs,
the same values through a spreader (coalitions evaluated elsewhere)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from agent.compute import LocalBackend
from agent.config import PlantedSettings, SyntheticSettings
from agent.env.features import FEATURE_NAMES, market_features
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.market.synthetic import generate
from agent.rewards.attribution import (
    CachedGame,
    Coalition,
    all_coalitions,
    exact_shapley,
    shapley,
    shapley_weights,
)
from agent.rewards.game import evaluate_epoch, null_signals
from tests.support.games import RecordingSpreader, kernel_game

CONFIG = EnvConfig()
SIGNALS_AT = CONFIG.lookback_bars * len(FEATURE_NAMES)
"""Offset of the strategy signals in a TradingEnv observation (then the masks, then exposure)."""
FULL, FLAT = len(CONFIG.exposure_levels) - 1, 0


class SumOfSignals:
    """Fully invested when the visible signals of `columns` sum above 0, else flat.

    A hand-written policy is a perfectly valid policy for the attribution maths: identical
    strategies have identical nulls (their median), so they are interchangeable, and a strategy
    whose signal is always 0 has a null that is always 0, so it never changes an action.
    """

    def __init__(self, columns: Sequence[int]) -> None:
        self.columns = np.asarray(columns) + SIGNALS_AT

    def __call__(self, observation: np.ndarray) -> int:
        return FULL if observation[self.columns].sum() > 0 else FLAT


def market(signals: dict[str, np.ndarray] | None = None, bars: int = 360) -> MarketData:
    """A seeded synthetic market; by default with an oracle, its copy, a zero and noise."""
    planted = PlantedSettings(information_coefficient=0.3, half_life_bars=6.0)
    synthetic = generate(SyntheticSettings(bars=bars, seed=11, planted=planted), "1h")
    oracle = np.clip(synthetic.planted / 2, -1, 1)
    rng = np.random.default_rng(5)
    if signals is None:
        signals = {
            "oracle": oracle,
            "oracle-copy": oracle.copy(),
            "silent": np.zeros(bars),
            "noise": rng.uniform(-1, 1, bars),
        }
    values = np.column_stack(list(signals.values())).astype("float32")
    candles = synthetic.candles
    return MarketData(
        open_time=candles["open_time"].to_numpy(),
        close=candles["close"].to_numpy(),
        features=market_features(candles),
        signals=values,
        mask=np.ones(values.shape, dtype=bool),
        strategy_names=tuple(signals),
    )


# --- the maths on hand-made games ----------------------------------------------------------


def test_weights_of_a_game_sum_to_one_over_the_coalitions_without_a_player() -> None:
    for n in range(1, 9):
        weights = shapley_weights(n)
        total = sum(math.comb(n - 1, s) * w for s, w in enumerate(weights))
        assert total == pytest.approx(1.0)


def test_a_hand_computed_three_player_game() -> None:
    """v: singletons 10/20/30, every pair 10 more than its parts, all three 90.

    phi_0 = 1/3 (10 - 0) + 1/6 (40 - 20) + 1/6 (50 - 30) + 1/3 (90 - 60) = 20
    phi_1 = 1/3 (20 - 0) + 1/6 (40 - 10) + 1/6 (60 - 30) + 1/3 (90 - 50) = 30
    phi_2 = 1/3 (30 - 0) + 1/6 (50 - 10) + 1/6 (60 - 20) + 1/3 (90 - 40) = 40
    """
    v = {
        frozenset(): 0.0,
        frozenset({0}): 10.0,
        frozenset({1}): 20.0,
        frozenset({2}): 30.0,
        frozenset({0, 1}): 40.0,
        frozenset({0, 2}): 50.0,
        frozenset({1, 2}): 60.0,
        frozenset({0, 1, 2}): 90.0,
    }
    result = shapley(v.__getitem__, ["a", "b", "c"])
    assert result.values == pytest.approx((20.0, 30.0, 40.0))
    assert result.std_errors == (0.0, 0.0, 0.0)
    assert (result.method, result.evaluations, result.v_all, result.v_empty) == (
        "exact",
        8,
        90.0,
        0.0,
    )


def test_the_glove_game() -> None:
    """One left glove (player 0), two right gloves: a pair is worth 1. Known: 2/3, 1/6, 1/6."""

    def gloves(s: Coalition) -> float:
        return 1.0 if 0 in s and (1 in s or 2 in s) else 0.0

    assert shapley(gloves, ["left", "right-1", "right-2"]).values == pytest.approx(
        (2 / 3, 1 / 6, 1 / 6)
    )


def test_exact_shapley_needs_every_coalition() -> None:
    with pytest.raises(KeyError):
        exact_shapley({frozenset(): 0.0}, 2)


def test_coalitions_are_evaluated_once_each() -> None:
    calls: list[Coalition] = []

    def counted(s: Coalition) -> float:
        calls.append(s)
        return float(len(s) ** 2)

    game = CachedGame(counted)
    shapley(game, ["a", "b", "c", "d"])
    shapley(game, ["a", "b", "c", "d"])  # a second attribution reuses every value
    assert sorted(calls, key=sorted) == sorted(all_coalitions(4), key=sorted)
    assert game.evaluations == 16


def test_a_game_returning_nan_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        shapley(lambda s: float("nan") if s else 0.0, ["a"])


def test_monte_carlo_is_seeded_and_keeps_efficiency() -> None:
    def v(s: Coalition) -> float:
        return sum(i * i for i in s) + (5.0 if {0, 1} <= s else 0.0)

    players = [f"p{i}" for i in range(12)]
    one = shapley(v, players, exact_max_players=10, samples=50, seed=3)
    two = shapley(v, players, exact_max_players=10, samples=50, seed=3)
    assert one == two
    assert one.method == "monte_carlo" and one.permutations == 50 and one.seed == 3
    assert sum(one.values) == pytest.approx(one.v_all - one.v_empty)
    assert one.values[5] == pytest.approx(25.0) and one.std_errors[5] == pytest.approx(0.0)


# --- the epoch game: the policy re-run with absent strategies shown as their null -----------


def test_a_null_is_in_distribution_and_carries_no_information() -> None:
    """Masking without dropout: the null shows only a value the strategy really produced.

    Per strategy the null keeps the availability mask, shows the median of the strategy's own
    available values (a value it produced, its most typical one) and does not vary with the
    market at all.
    """
    data = market()
    masked = data.mask.copy()
    masked[:30, 3] = False  # a strategy with a warm-up
    data = replace(data, mask=masked, signals=np.where(masked, data.signals, 0).astype("float32"))
    null = null_signals(data)
    assert np.array_equal(null.mask, data.mask)
    for column in range(data.n_strategies):
        available = data.mask[:, column]
        own = data.signals[available, column]
        shown = set(null.signals[available, column].tolist())
        assert len(shown) == 1 and shown <= set(own.tolist())  # one value, one of its own
        (value,) = shown
        assert (own < value).mean() <= 0.5 <= (own <= value).mean()  # the median
        assert np.all(null.signals[~available, column] == 0)


def test_the_grand_coalition_is_the_agent_run_with_every_signal() -> None:
    data = market()
    policy = SumOfSignals(range(4))
    game = evaluate_epoch(policy, data, 100, 300)
    env = TradingEnv(data, CONFIG)
    obs, info = env.reset(options={"start": 100, "end": 300})
    start_value = info["value_quote"]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
    assert game.value(frozenset(range(4))) == pytest.approx(
        math.log(info["value_quote"] / start_value)
    )
    outcome = game.outcome(frozenset(range(4)))
    assert outcome.decisions == 200 and outcome.value_end == pytest.approx(info["value_quote"])


def test_efficiency_contributions_sum_to_the_gain_over_no_strategy() -> None:
    data = market()
    game = evaluate_epoch(SumOfSignals(range(4)), data, 60, 340)
    result = shapley(game, game.names)
    assert result.v_all != result.v_empty
    assert sum(result.values) == pytest.approx(result.v_all - result.v_empty, abs=1e-12)


def test_symmetry_strategies_that_swap_signals_swap_values() -> None:
    """Two genuinely different signals (neither explains the other) are treated alike.

    Swapping the two signals between the strategies swaps their values exactly: the rule
    credits the signal, not the name or the column.
    """
    base = market()
    rng = np.random.default_rng(3)
    first, second = base.signals[:, 0], rng.uniform(-1, 1, base.bars).astype("float32")
    one = market({"a": first, "b": second, "noise": base.signals[:, 3]})
    two = market({"a": second, "b": first, "noise": base.signals[:, 3]})
    values_one = shapley(evaluate_epoch(SumOfSignals(range(3)), one, 60, 340), ["a", "b", "noise"])
    values_two = shapley(evaluate_epoch(SumOfSignals(range(3)), two, 60, 340), ["a", "b", "noise"])
    assert values_one.by_name()["a"] == pytest.approx(values_two.by_name()["b"], abs=1e-15)
    assert values_one.by_name()["b"] == pytest.approx(values_two.by_name()["a"], abs=1e-15)
    assert values_one.by_name()["a"] != values_one.by_name()["b"]


def test_null_player_a_strategy_that_never_changes_an_action_gets_zero() -> None:
    data = market()
    values = shapley(evaluate_epoch(SumOfSignals(range(4)), data, 60, 340), data.strategy_names)
    assert values.by_name()["silent"] == 0.0  # its signal is always 0: never tips the sum
    ignored = evaluate_epoch(SumOfSignals([0]), data, 60, 340)  # reads the oracle only
    result = shapley(ignored, data.strategy_names).by_name()
    assert result["oracle-copy"] == result["silent"] == result["noise"] == 0.0
    assert result["oracle"] == pytest.approx(
        ignored.value(frozenset(range(4))) - ignored.value(frozenset())
    )


def test_non_players_always_show_their_null() -> None:
    data = market()
    game = evaluate_epoch(SumOfSignals(range(4)), data, 60, 340, names=["noise", "oracle"])
    assert game.columns == (3, 0)
    assert game.real(frozenset({1})).tolist() == [True, False, False, False]
    shown = game.data_for(frozenset({1}))
    assert np.array_equal(shown.signals[:, 0], game.data.signals[:, 0])  # the oracle, real
    assert game.null is not None
    for column in (1, 2, 3):  # the copy and the silent one (non-players), the noise (absent)
        assert np.array_equal(shown.signals[:, column], game.null.signals[:, column])
    with pytest.raises(ValueError, match="not in the data"):
        evaluate_epoch(SumOfSignals([0]), data, 60, 340, names=["nobody"])
    with pytest.raises(ValueError, match="must lie within"):
        evaluate_epoch(SumOfSignals([0]), data, 60, data.bars)


def test_monte_carlo_is_within_three_standard_errors_of_exact_on_eight_players() -> None:
    base = market()
    rng = np.random.default_rng(8)
    oracle = base.signals[:, 0].astype("float64")
    signals = {f"s{k}": (k % 4) / 3 * oracle + rng.uniform(-0.8, 0.8, base.bars) for k in range(8)}
    data = market(signals)
    game = CachedGame(evaluate_epoch(SumOfSignals(range(8)), data, 60, 340))
    exact = shapley(game, data.strategy_names)
    estimate = shapley(game, data.strategy_names, exact_max_players=7, samples=300, seed=1)
    assert estimate.method == "monte_carlo" and exact.method == "exact"
    for name, mc, se, truth in zip(
        data.strategy_names, estimate.values, estimate.std_errors, exact.values, strict=True
    ):
        assert se > 0, name
        assert abs(mc - truth) <= 3 * se, f"{name}: {mc} vs exact {truth} (se {se})"
    assert sum(estimate.values) == pytest.approx(exact.v_all - exact.v_empty, abs=1e-12)


def test_two_workers_give_the_same_values_as_one() -> None:
    data = market()
    game = evaluate_epoch(SumOfSignals(range(4)), data, 60, 340)
    serial = shapley(game, data.strategy_names, workers=1)
    progress: list[tuple[int, int]] = []
    parallel = shapley(
        CachedGame(game, workers=2, min_parallel=2, pays_seconds=0.0),
        data.strategy_names,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert parallel == serial
    assert progress[-1] == (16, 16)


# --- groups: copies grouped with their original, credited in registration order -------------


def random_game(n: int, bars: int = 7, seed: int = 0) -> dict[Coalition, np.ndarray]:
    """A game with a random per-bar series for every coalition (∅ included)."""
    rng = np.random.default_rng(seed)
    return {c: rng.normal(size=bars) for c in all_coalitions(n)}


def test_with_every_player_its_own_group_the_value_is_the_shapley_value() -> None:
    table = random_game(5)
    scalar = {c: float(s.sum()) for c, s in table.items()}
    result = shapley(lambda c: table[c], list("abcde"))
    assert result.values == pytest.approx(exact_shapley(scalar, 5), abs=1e-12)
    assert result.per_bar.sum(axis=1) == pytest.approx(result.values, abs=1e-12)


@pytest.mark.parametrize(
    "groups", [[[0, 2], [1], [3, 4]], [[4, 0, 1, 2, 3]], [[1], [0, 3], [2, 4]]]
)
def test_efficiency_holds_under_any_group_structure_bar_by_bar(groups: list[list[int]]) -> None:
    table = random_game(5, seed=3)
    result = shapley(lambda c: table[c], list("abcde"), groups=groups)
    gain = table[frozenset(range(5))] - table[frozenset()]
    assert sum(result.values) == pytest.approx(float(gain.sum()), abs=1e-12)
    assert result.per_bar.sum(axis=0) == pytest.approx(gain, abs=1e-12)  # every bar


def test_a_copy_in_the_original_s_group_gets_nothing_and_the_original_everything() -> None:
    """v = 1 as soon as the signal is there (from the original or its copy).

    Plain Shapley splits it 1/2 - 1/2 (the attack); grouped, in registration order, the
    original keeps all of it, and what the group earns does not depend on the copy.
    """

    def game(coalition: Coalition) -> float:
        return 1.0 if coalition & {0, 2} else 0.0

    plain = shapley(game, ["original", "other", "copy"]).by_name()
    assert plain["original"] == pytest.approx(0.5) and plain["copy"] == pytest.approx(0.5)
    grouped = shapley(game, ["original", "other", "copy"], groups=[[0, 2], [1]]).by_name()
    assert grouped == {"original": 1.0, "other": 0.0, "copy": 0.0}


def test_symmetry_between_groups_and_the_null_player_inside_one() -> None:
    def game(coalition: Coalition) -> float:  # 0 and 1 interchangeable; 2 never matters
        return float(len(coalition & {0, 1}) ** 2)

    values = shapley(game, ["a", "b", "null"], groups=[[0], [1, 2]]).by_name()
    assert values["a"] == values["b"] == pytest.approx(2.0)
    assert values["null"] == 0.0


def test_monte_carlo_over_groups_is_close_to_exact_and_keeps_efficiency() -> None:
    table = random_game(6, seed=5)
    groups = [[0, 3], [1], [2, 4], [5]]
    exact = shapley(lambda c: table[c], list("abcdef"), groups=groups)
    sampled = shapley(
        lambda c: table[c], list("abcdef"), groups=groups, exact_max_players=3, samples=400, seed=2
    )
    assert sampled.method == "monte_carlo" and exact.method == "exact"
    assert sum(sampled.values) == pytest.approx(sum(exact.values), abs=1e-12)
    for mc, se, truth in zip(sampled.values, sampled.std_errors, exact.values, strict=True):
        assert abs(mc - truth) <= 3 * se + 1e-12


def test_a_later_copy_is_grouped_with_its_original_in_the_epoch_game() -> None:
    base = market()
    oracle = base.signals[:, 0]
    rng = np.random.default_rng(4)
    data = market(
        {
            "oracle": oracle,
            "noise": base.signals[:, 3],
            "lagged": np.concatenate([[0.0], oracle[:-1]]).astype("float32"),
            "scaled": (0.9 * oracle + rng.normal(0, 0.05, base.bars)).astype("float32"),
            "other": rng.uniform(-1, 1, base.bars).astype("float32"),
        }
    )
    game = evaluate_epoch(SumOfSignals(range(5)), data, 60, 340)
    assert game.partition() == [[0, 2, 3], [1], [4]]
    groups = game.groups()
    assert set(groups) == {"lagged", "scaled"}
    assert groups["lagged"]["group"] == "oracle" and groups["lagged"]["r2"] > 0.99
    assert groups["scaled"]["explained_by"][0][0] == "oracle"
    everything = game.data_for(frozenset(range(5)))
    assert everything is game.data  # v(all) is the agent's own run, every signal real
    result = shapley(game, game.names, groups=game.partition())
    values = result.by_name()
    assert abs(values["lagged"]) + abs(values["scaled"]) <= 0.05 * abs(values["oracle"])
    assert sum(result.values) == pytest.approx(result.v_all - result.v_empty, abs=1e-12)


def test_a_coalition_whose_run_is_ruined_stays_flat_to_the_end_of_the_epoch() -> None:
    """With 10 % fees, following the noise signal ruins the portfolio within the epoch; its
    null (a constant) never trades twice. The ruined runs stop early; their series still
    cover the epoch (flat after the ruin), so the Shapley values exist and add up."""
    from agent.dex.pool import PoolConfig

    data = market()
    costly = replace(CONFIG, pool=PoolConfig(fee_bps=1_000))
    game = evaluate_epoch(SumOfSignals([3]), data, 60, 340, env_config=costly)
    ruined = game.outcome(frozenset({3}))
    assert ruined.decisions < 280, "the noise follower should be ruined inside the epoch"
    assert len(ruined.equity) == 281 and ruined.equity[-1] == ruined.equity[ruined.decisions]
    result = shapley(game, data.strategy_names)
    assert result.values[3] < -1.0
    assert sum(result.values) == pytest.approx(result.v_all - result.v_empty, abs=1e-9)


# --- a spreader: the coalitions evaluated elsewhere (a Backend), the values combined here ---


def spread(workers: int = 1) -> RecordingSpreader:
    """The local backend (tasks in this process), recording the batches it is given."""
    return RecordingSpreader(LocalBackend(), workers=workers)


@pytest.mark.parametrize("workers", [1, 3])
def test_a_spreader_gives_the_same_attribution_as_the_default_path(workers: int) -> None:
    game = kernel_game(players=5, epoch_bars=120)
    default = shapley(game, game.names)
    spreader = spread(workers)
    progress: list[tuple[int, int]] = []
    spread_out = shapley(
        CachedGame(game, spreader=spreader, pays_seconds=0.0),
        game.names,
        progress=lambda done, total: progress.append((done, total)),
    )
    assert spread_out == default
    assert spread_out.values == default.values and spread_out.std_errors == default.std_errors
    assert np.array_equal(spread_out.per_bar, default.per_bar)
    # every coalition went through the spreader, once, in 4 batches per worker
    assert sorted(spreader.coalitions, key=sorted) == sorted(all_coalitions(5), key=sorted)
    assert len(spreader.batches) == 4 * workers
    assert {len(b) for b in spreader.batches} <= {32 // (4 * workers), -(-32 // (4 * workers))}
    assert progress[-1] == (32, 32) and [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_a_spreader_gives_the_same_monte_carlo_estimate() -> None:
    game = kernel_game(players=5, epoch_bars=120)
    kwargs: dict[str, Any] = {"exact_max_players": 3, "samples": 30, "seed": 4}
    default = shapley(game, game.names, **kwargs)
    spreader = spread(2)
    spread_out = shapley(
        CachedGame(game, spreader=spreader, pays_seconds=0.0), game.names, **kwargs
    )
    assert spread_out.method == "monte_carlo" and spread_out == default
    assert np.array_equal(spread_out.per_bar, default.per_bar)
    assert len(spreader.coalitions) == spread_out.evaluations


def test_a_spreader_is_used_only_when_it_pays() -> None:
    """The probe that decides whether forking workers pays decides for a spreader too."""
    table = random_game(6)
    fast, forced = spread(2), spread(2)
    quick = shapley(CachedGame(table.__getitem__, spreader=fast), list("abcdef"))
    sent = shapley(CachedGame(table.__getitem__, spreader=forced, pays_seconds=0.0), list("abcdef"))
    assert fast.batches == []  # 64 dictionary lookups: far below PAYS_SECONDS in-process
    assert len(forced.coalitions) == 64
    assert quick == sent and np.array_equal(quick.per_bar, sent.per_bar)


def test_efficiency_holds_bar_by_bar_through_a_spreader() -> None:
    table = random_game(5, seed=3)
    for groups in ([[0, 2], [1], [3, 4]], None):
        result = shapley(
            CachedGame(table.__getitem__, spreader=spread(2), pays_seconds=0.0),
            list("abcde"),
            groups=groups,
        )
        gain = table[frozenset(range(5))] - table[frozenset()]
        assert sum(result.values) == pytest.approx(float(gain.sum()), abs=1e-12)
        assert result.per_bar.sum(axis=0) == pytest.approx(gain, abs=1e-12)


def test_symmetry_and_the_null_player_through_a_spreader() -> None:
    def gloves(s: Coalition) -> float:  # the right gloves are interchangeable
        return 1.0 if 0 in s and (1 in s or 2 in s) else 0.0

    spreader = spread(2)
    values = shapley(
        CachedGame(gloves, spreader=spreader, min_parallel=2, pays_seconds=0.0),
        ["left", "right-1", "right-2"],
    ).values
    assert len(spreader.coalitions) == 8
    assert values[1] == values[2] and values == pytest.approx((2 / 3, 1 / 6, 1 / 6))
    data = market()
    ignored = evaluate_epoch(SumOfSignals([0]), data, 60, 340)  # reads the oracle only
    result = shapley(
        CachedGame(ignored, spreader=spread(2), pays_seconds=0.0), data.strategy_names
    ).by_name()
    assert result["oracle-copy"] == result["silent"] == result["noise"] == 0.0
    assert result["oracle"] == pytest.approx(
        ignored.value(frozenset(range(4))) - ignored.value(frozenset())
    )


def test_the_epoch_game_pickles_and_plays_the_same_in_another_process() -> None:
    """A spreader sends the game by pickle (Ray: cloudpickle) to processes that never forked
    from this one: the policy (a NumpyPolicy with its kernel network) and the market travel."""
    game = kernel_game(players=4, epoch_bars=80)
    game(frozenset({0}))  # the policy's packed network is built: it travels too
    copy = pickle.loads(pickle.dumps(game))
    assert copy.predict.network.n_inputs == game.predict.network.n_inputs
    for coalition in all_coalitions(4):
        assert np.array_equal(copy(coalition), game(coalition))


def test_a_failing_game_fails_the_same_through_a_spreader() -> None:
    with pytest.raises(ValueError, match="finite"):
        shapley(
            CachedGame(
                lambda s: float("nan") if len(s) == 3 else 0.0,
                spreader=spread(2),
                min_parallel=2,
                pays_seconds=0.0,
            ),
            ["a", "b", "c"],
        )
