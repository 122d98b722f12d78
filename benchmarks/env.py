"""Environment throughput: Agora's TradingEnv against gym-anytrading's StocksEnv, same candles.

Prints, for each environment, raw steps per second (random actions, resets included) and steps
per second inside PPO training (SB3 MlpPolicy [64, 64], n_steps 2048, one torch thread), all
measured in the same run on the same synthetic candles. Agora's environment does more per step
(the V2 pool's arithmetic in the compiled kernel, fee, impact and gas, strategy signals and
masks in the observation)
than the reference, which only tracks a long/short position on the close. Also prints the cost
of one deterministic action from SB3's `predict` and from the numpy policy used by backtests.

Targets (issue 16), judged on the discrete environment (the default action space): raw steps per
second at least 1.0x StocksEnv's, and PPO training steps per second at least 0.9x PPO's on
StocksEnv.

Run: `.venv/bin/python benchmarks/env.py [--bars N] [--raw-steps N] [--ppo-steps N]`
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import print_header, print_kernel_compile, print_table, print_targets, ratio_target

from agent.config import Settings, SyntheticSettings
from agent.env.trading_env import EnvConfig, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies

STRATEGIES = ("ma-crossover", "rsi-reversion", "macd", "ts-momentum", "noise:seed=1")


def raw_steps_per_s(env: Any, steps: int, seed: int = 0) -> float:
    """Step `env` with random actions for `steps` steps (resetting when done)."""
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    started = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - started)


def ppo_steps_per_s(env: Any, steps: int) -> float:
    """Train PPO on `env` for `steps` steps and return the steps per second."""
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]})
    started = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - started)


def inference_us(env: TradingEnv, calls: int = 2_000) -> tuple[float, float]:
    """Return microseconds per deterministic action: SB3 predict, then the numpy policy."""
    import torch
    from stable_baselines3 import PPO

    from agent.learn.inference import NumpyPolicy

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", env, seed=0, device="cpu", policy_kwargs={"net_arch": [64, 64]})
    obs, _ = env.reset(seed=0)
    started = time.perf_counter()
    for _ in range(calls):
        model.predict(obs, deterministic=True)
    sb3 = (time.perf_counter() - started) / calls * 1e6
    policy = NumpyPolicy.from_model(model)
    started = time.perf_counter()
    for _ in range(calls):
        policy(obs)
    fast = (time.perf_counter() - started) / calls * 1e6
    return sb3, fast


def anytrading_env(candles: Any, window: int) -> Any:
    """gym-anytrading's StocksEnv over the same candles, or None if it is not installed."""
    try:
        from gym_anytrading.envs import StocksEnv
    except ImportError:
        return None
    frame = candles.rename(columns=str.capitalize)
    return StocksEnv(df=frame, window_size=window, frame_bound=(window, len(frame)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20_000)
    parser.add_argument("--raw-steps", type=int, default=100_000)
    parser.add_argument("--ppo-steps", type=int, default=8_192)
    args = parser.parse_args(argv)

    market = generate(SyntheticSettings(seed=7, bars=args.bars), "1h")
    candles = market.candles
    settings = Settings()
    data, _ = build_market_data(
        candles, resolve_strategies(STRATEGIES), hidden={"planted": market.planted}
    )
    config = EnvConfig.from_settings(settings)
    agora = TradingEnv(data, config)
    reference = anytrading_env(candles, config.lookback_bars)

    print_header(
        ("numpy", "stable-baselines3", "torch", "gym-anytrading"),
        f"{args.bars:,} synthetic 1h bars; {len(STRATEGIES)} strategies for Agora",
    )
    print_kernel_compile()
    rows = [("agora TradingEnv (discrete)", agora)]
    rows.append(
        (
            "agora TradingEnv (continuous)",
            TradingEnv(data, EnvConfig.from_settings(settings, "continuous")),
        )
    )
    if reference is not None:
        rows.append(("gym-anytrading StocksEnv", reference))
    measured = {}
    for name, env in rows:
        measured[name] = (
            raw_steps_per_s(env, args.raw_steps),
            ppo_steps_per_s(env, args.ppo_steps),
        )
    print_table(
        ("environment", "raw steps/s", "PPO steps/s"), [(n, *m) for n, m in measured.items()]
    )
    if reference is None:
        print("gym-anytrading is not installed (pip install gym-anytrading): no reference row")
    sb3, fast = inference_us(agora)
    print(f"one deterministic action: SB3 predict {sb3:.1f} us, numpy policy {fast:.1f} us")
    if reference is not None:
        ours, theirs = measured["agora TradingEnv (discrete)"], measured["gym-anytrading StocksEnv"]
        print_targets(
            [
                ratio_target("raw env steps/s", ours[0], "StocksEnv", theirs[0], 1.0),
                ratio_target("PPO training steps/s", ours[1], "PPO on StocksEnv", theirs[1], 0.9),
            ]
        )


if __name__ == "__main__":
    main()
