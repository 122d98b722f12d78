"""Exact Shapley time: a reward epoch of 1,000 bars attributed among 8 and 10 strategies.

    .venv/bin/python benchmarks/shapley.py                 # 8 and 10 players (1-2 min)
    .venv/bin/python benchmarks/shapley.py --players 8 --epoch-bars 500

The epoch's game is the one reward epochs play (`agent.rewards.game.evaluate_epoch`): a PPO
MlpPolicy [64, 64] (untrained: its speed is a trained one's) through `NumpyPolicy`, re-run over
the epoch for every coalition with the strategies outside it shown as their null, without
costs (see `frictionless_env`). The
strategies are the six shipped ones and `noise:seed=k` fixtures up to ten; a game of 8 players
plays the first eight, the other two shown as their null throughout.

Timed: `agent.rewards.attribution.shapley` in exact mode with every player its own group (all
2^n coalitions, the worst case: reward epochs group near-copies, which can only need fewer),
the block bootstrap included; in this process (`workers=1`, the row judged against the target)
and with a pool of 2 processes (`rewards.workers`, the default), the peer row. One rollout of the
epoch runs first, timed apart (`first rollout`: the compile, once the rollout kernel is
compiled). Targets (issue 16): 8 players in at most 2 s, 10 players in at most 10 s.

With Ray installed (the `agora[ray]` extra; `--no-ray` skips it), the largest game is also
attributed with its coalitions as Ray tasks (`compute.backend: ray`) on a Ray started here with
1 CPU, then with 2 (`compute.num_cpus`), each after a small attribution that warms its workers
(a fresh worker imports Agora and loads the kernel once per run). Target (issue 18): 2 CPUs
attribute at least 1.5x as fast as 1 (the speed-up from 1 to 2 local workers).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import (
    Target,
    limit_target,
    print_header,
    print_kernel_compile,
    print_table,
    print_targets,
    ratio_target,
    timed,
)

from agent.config import ComputeSettings, SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.env.rollout import ModelPolicy
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies
from agent.rewards.attribution import CachedGame, shapley
from agent.rewards.game import evaluate_epoch

SHIPPED = (
    "ma-crossover",
    "rsi-reversion",
    "macd",
    "ts-momentum",
    "bollinger-reversion",
    "donchian-breakout",
)
LIMIT_S = {8: 2.0, 10: 10.0}
POOL_WORKERS = 2
RAY_CPUS = (1, 2)
RAY_SPEEDUP = 1.5
"""Wanted: 2 CPUs at least this many times as fast as 1 (2.0 would be perfect)."""


def strategy_specs(players: int) -> list[str]:
    """Return `players` strategy specs: the shipped ones, then noise fixtures."""
    noise = [f"noise:seed={k}" for k in range(1, max(0, players - len(SHIPPED)) + 1)]
    return [*SHIPPED, *noise][:players]


def frictionless_env() -> EnvConfig:
    """Return the default environment without costs (no fee, gas or minimum; a deep pool).

    An untrained policy churns: with costs it is ruined within the epoch and its run stops
    early (flat to the epoch's end), which would flatter the time. Without them every coalition
    runs all 1,000 bars, the worst case, and every rebalance still goes through the pool math.
    """
    pool = replace(
        PoolConfig(), fee_bps=0, gas_price_gwei=0.0, min_trade_quote=0.0, liquidity_quote=1e15
    )
    return EnvConfig(pool=pool)


def untrained_policy(data: MarketData) -> ModelPolicy:
    """Return an untrained PPO MlpPolicy [64, 64] over `data`'s strategies, as numpy."""
    import torch
    from stable_baselines3 import PPO

    from agent.learn.inference import NumpyPolicy

    torch.set_num_threads(1)
    config = frictionless_env()
    model = PPO(
        "MlpPolicy",
        TradingEnv(data, config),
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [64, 64]},
    )
    return ModelPolicy("ppo", NumpyPolicy.from_model(model), config)


def attribute(game: Any, names: tuple[str, ...], workers: int) -> tuple[float, int]:
    """Return (seconds, coalitions evaluated) of one exact attribution of `game`."""
    cached = CachedGame(game, workers=workers)
    seconds, _ = timed(lambda: shapley(cached, names, exact_max_players=len(names)))
    return seconds, cached.evaluations


def attribute_on_ray(game: Any, names: tuple[str, ...], cpus: int) -> tuple[float, int]:
    """Return (seconds, batches) of one exact attribution with the coalitions as Ray tasks, on
    a Ray started here with `cpus` CPUs, its workers warmed by a smaller attribution first."""
    from agent.compute.ray_backend import connected

    with connected(ComputeSettings(backend="ray", num_cpus=cpus)) as backend:
        warm = CachedGame(game, spreader=backend, pays_seconds=0.0)
        shapley(warm, names[:5], exact_max_players=5)
        cached = CachedGame(game, spreader=backend)  # the default probe: it pays here
        seconds, _ = timed(lambda: shapley(cached, names, exact_max_players=len(names)))
    return seconds, backend.workers


def measure(
    policy: ModelPolicy, data: MarketData, start: int, end: int, names: tuple[str, ...]
) -> tuple[float, float, float, float, int]:
    """Return the epoch game's setup, first rollout, in-process and pooled attribution seconds,
    and the coalitions evaluated."""
    setup_s, game = timed(lambda: evaluate_epoch(policy, data, start, end, names))
    first_s, _ = timed(lambda: game(frozenset(range(len(names)))))
    alone_s, evaluations = attribute(game, names, workers=1)
    pool_s, _ = attribute(game, names, workers=POOL_WORKERS)
    return setup_s, first_s, alone_s, pool_s, evaluations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, nargs="+", default=[8, 10])
    parser.add_argument("--epoch-bars", type=int, default=1_000)
    parser.add_argument(
        "--no-ray", action="store_true", help="Skip the Ray rows (run without the extra)."
    )
    args = parser.parse_args(argv)
    ray = not args.no_ray and importlib.util.find_spec("ray") is not None
    most = max(args.players)
    print_header(
        ("numpy", "numba", "stable-baselines3", *(("ray",) if ray else ())),
        f"an epoch of {args.epoch_bars:,} synthetic 1h bars; {', '.join(map(str, args.players))} "
        "players",
    )
    print_kernel_compile()
    start = 2 * EnvConfig().first_bar  # past the features' and the strategies' warm-up
    bars = start + args.epoch_bars + 1
    candles = generate(SyntheticSettings(bars=bars, seed=7), "1h").candles
    data, _ = build_market_data(candles, resolve_strategies(strategy_specs(most)))
    policy = untrained_policy(data)

    rows: list[tuple[Any, ...]] = []
    targets: list[Target] = []
    for players in args.players:
        names = tuple(data.strategy_names[:players])
        setup_s, first_s, alone_s, pool_s, evaluations = measure(
            policy, data, start, start + args.epoch_bars, names
        )
        rows.append((f"{players} players, in-process", evaluations, setup_s, first_s, alone_s))
        rows.append((f"{players} players, pool of {POOL_WORKERS}", evaluations, "-", "-", pool_s))
        if players in LIMIT_S:
            limit = LIMIT_S[players]
            targets.append(limit_target(f"exact Shapley, {players} players", alone_s, limit))
            targets.append(
                limit_target(f"  same, pool of {POOL_WORKERS} (peer row)", pool_s, limit)
            )
    ray_targets: list[Target] = []
    if ray:
        names = tuple(data.strategy_names[:most])
        game = evaluate_epoch(policy, data, start, start + args.epoch_bars, names)
        seconds = {}
        for cpus in RAY_CPUS:
            seconds[cpus], workers = attribute_on_ray(game, names, cpus)
            plural = "s" if cpus > 1 else ""
            label = f"{most} players, Ray {cpus} CPU{plural} ({workers} worker{plural})"
            rows.append((label, 2**most, "-", "-", seconds[cpus]))
        one, two = seconds[RAY_CPUS[0]], seconds[RAY_CPUS[1]]
        ray_targets.append(
            ratio_target(
                f"exact Shapley, {most} players: Ray 2 CPUs (coalitions/s)",
                2**most / two,
                "Ray 1 CPU",
                2**most / one,
                RAY_SPEEDUP,
            )
        )
    print_table(("", "coalitions", "game setup s", "first rollout s", "shapley s"), rows)
    print_targets(targets)
    if ray_targets:
        print_targets(ray_targets, issue=18)


if __name__ == "__main__":
    main()
