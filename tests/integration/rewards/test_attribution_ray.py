"""Shapley attribution with the coalitions as Ray tasks, on a real local cluster.

The driver joins the session's `ray start --head` cluster with `compute.address: auto`, as a
command does. Each attribution is forced off-process (`pays_seconds=0`): every coalition is
evaluated by a Ray worker, in batches, and the values must equal the in-process ones bit for
bit, with the Shapley axioms holding on the Ray result.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from agent.compute import open_backend
from agent.config import ComputeSettings, Settings
from agent.rewards.attribution import Attribution, CachedGame, all_coalitions, shapley
from agent.rewards.game import EpochGame
from tests.support.games import RecordingSpreader, WithCopyAndNull, kernel_game
from tests.support.ray_cluster import RayCluster

pytestmark = pytest.mark.slow

PLAYERS = 6


@pytest.fixture(scope="module")
def ray_backend(ray_cluster: RayCluster) -> Iterator[Any]:
    """A RayBackend joined to the session's cluster with `compute.address: auto`."""
    settings = Settings(compute=ComputeSettings(backend="ray", address="auto"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ray_cluster.env.items():
            patch.setenv(name, value)
        with open_backend(settings) as backend:
            yield backend


@pytest.fixture(scope="module")
def game() -> EpochGame:
    return kernel_game(players=PLAYERS, epoch_bars=200)


def on_ray(ray_backend: Any, game: Any, **kwargs: Any) -> tuple[Attribution, RecordingSpreader]:
    """Attribute `game` with every coalition a Ray task's; return it and the batches sent."""
    spreader = RecordingSpreader(ray_backend)
    cached = CachedGame(game, spreader=spreader, pays_seconds=0.0)
    return shapley(cached, game.names, **kwargs), spreader


def assert_identical(ray: Attribution, local: Attribution) -> None:
    assert ray.values == local.values
    assert ray.std_errors == local.std_errors
    assert np.array_equal(ray.per_bar, local.per_bar)
    assert (ray.v_all, ray.v_empty, ray.evaluations) == (
        local.v_all,
        local.v_empty,
        local.evaluations,
    )
    assert ray == local


def test_exact_attribution_on_ray_equals_the_local_one_bit_for_bit(
    ray_backend: Any, game: EpochGame
) -> None:
    assert ray_backend.name == "ray" and ray_backend.workers == 2
    local = shapley(game, game.names)
    ray, spreader = on_ray(ray_backend, game)
    assert ray.method == "exact" and ray.evaluations == 2**PLAYERS
    # every coalition was a Ray task's, none this process's: 4 batches per worker
    assert sorted(spreader.coalitions, key=sorted) == sorted(all_coalitions(PLAYERS), key=sorted)
    assert len(spreader.batches) == 8
    assert_identical(ray, local)


def test_the_shapley_axioms_hold_on_the_ray_result(ray_backend: Any, game: EpochGame) -> None:
    """The epoch game plus a copy of player 0 and a null player (8 players, 256 coalitions)."""
    extended = WithCopyAndNull(game, copy_of=0)
    ray, spreader = on_ray(ray_backend, extended)
    assert len(spreader.coalitions) == 2 ** (PLAYERS + 2)
    n = PLAYERS + 2
    # efficiency: the values, and every bar's contributions, add up to v(all) - v(none)
    gain = game(frozenset(range(PLAYERS))) - game(frozenset())
    assert math.fsum(ray.values) == pytest.approx(float(gain.sum()), abs=1e-12)
    assert ray.per_bar.sum(axis=0) == pytest.approx(gain, abs=1e-12)
    # symmetry: the copy and its original are interchangeable, so their values are equal
    assert ray.values[PLAYERS] == ray.values[0] != 0.0
    # null player: never changes v, gets exactly 0
    assert ray.values[n - 1] == 0.0 and not ray.per_bar[n - 1].any()
    assert len(set(ray.values[1:PLAYERS])) == PLAYERS - 1  # the others differ
    assert_identical(ray, shapley(extended, extended.names))


def test_monte_carlo_on_ray_equals_the_local_estimate_bit_for_bit(
    ray_backend: Any, game: EpochGame
) -> None:
    sampling = {"exact_max_players": 4, "samples": 40, "seed": 9}
    local = shapley(game, game.names, **sampling)
    ray, spreader = on_ray(ray_backend, game, **sampling)
    assert ray.method == "monte_carlo" and ray.seed == 9
    assert len(spreader.coalitions) == ray.evaluations
    assert_identical(ray, local)
