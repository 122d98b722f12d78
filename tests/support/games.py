"""Attribution test helpers: an epoch game on the rollout kernel, a spreader that records.

`kernel_game` is the reward epoch's game (`agent.rewards.game.evaluate_epoch`) for a seeded
random MLP as a `NumpyPolicy`, so every coalition is a compiled-kernel rollout, as for a
trained model. `RecordingSpreader` passes every call on to a real backend (local or Ray) and
keeps the batches it was given, so a test can tell which coalitions went off-process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.config import PlantedSettings, SyntheticSettings
from agent.env.features import market_features
from agent.env.trading_env import EnvConfig, MarketData
from agent.learn.inference import DenseLayer, NumpyPolicy
from agent.market.synthetic import generate
from agent.rewards.game import EpochGame, evaluate_epoch


def kernel_market(players: int, bars: int, seed: int = 11) -> MarketData:
    """A seeded synthetic market with `players` strategies: noisy views of a planted oracle."""
    planted = PlantedSettings(information_coefficient=0.3, half_life_bars=6.0)
    synthetic = generate(SyntheticSettings(bars=bars, seed=seed, planted=planted), "1h")
    oracle = np.clip(synthetic.planted / 2, -1, 1)
    rng = np.random.default_rng(seed)
    columns = [
        np.clip((k + 1) / players * oracle + rng.normal(0, 0.5, bars), -1, 1)
        for k in range(players)
    ]
    values = np.column_stack(columns).astype("float32")
    candles = synthetic.candles
    return MarketData(
        open_time=candles["open_time"].to_numpy(),
        close=candles["close"].to_numpy(),
        features=market_features(candles),
        signals=values,
        mask=np.ones(values.shape, dtype=bool),
        strategy_names=tuple(f"s{k}" for k in range(players)),
    )


def random_policy(n_inputs: int, levels: int, seed: int = 3) -> NumpyPolicy:
    """A seeded MLP [n_inputs, 16, levels] (tanh), argmax over the exposure levels."""
    rng = np.random.default_rng(seed)
    hidden = DenseLayer(
        rng.normal(0, 1, (n_inputs, 16)).astype("float32"), np.zeros(16, "float32"), "tanh"
    )
    head = DenseLayer(
        rng.normal(0, 1, (16, levels)).astype("float32"), np.zeros(levels, "float32"), "identity"
    )
    return NumpyPolicy([hidden, head], "argmax")


def kernel_game(players: int = 6, epoch_bars: int = 200, seed: int = 11) -> EpochGame:
    """The epoch game of a random `NumpyPolicy` over `players` strategies (kernel rollouts)."""
    config = EnvConfig()
    start = 2 * config.first_bar
    data = kernel_market(players, start + epoch_bars + 1, seed)
    spec = config.spec(data.strategy_names)
    policy = random_policy(spec.observation_size, len(config.exposure_levels), seed)
    return evaluate_epoch(policy, data, start, start + epoch_bars, env_config=config)


class RecordingSpreader:
    """A backend that keeps every batch it runs and passes the work on to `backend`."""

    def __init__(self, backend: Any, workers: int | None = None) -> None:
        self.backend = backend
        self.name = backend.name
        self.workers = backend.workers if workers is None else workers
        self.batches: list[list[frozenset[int]]] = []

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        items: Sequence[Any],
        *,
        label: str,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[Any]:
        self.batches.extend(list(batch) for batch in items)
        return list(self.backend.map(fn, shared, items, label=label, progress=progress))

    @property
    def coalitions(self) -> list[frozenset[int]]:
        """Every coalition sent off-process, in the order sent."""
        return [c for batch in self.batches for c in batch]


@dataclass(frozen=True)
class WithCopyAndNull:
    """`game` with two more players: a copy of player `copy_of`, then a null player.

    The copy shows what the original shows (the original's column is real when either is in
    the coalition), so the two are interchangeable; the null player never changes anything.
    Module-level, so Ray workers can import it.
    """

    game: EpochGame
    copy_of: int = 0

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.game.names, "copy", "null")

    def __call__(self, coalition: frozenset[int]) -> np.ndarray:
        n = len(self.game.names)
        real = {p for p in coalition if p < n} | ({self.copy_of} if n in coalition else set())
        return self.game(frozenset(real))
