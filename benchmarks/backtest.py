"""Backtest throughput: bars per second of Agora's engine beside vectorbt and backtesting.py.

    .venv/bin/python benchmarks/backtest.py            # 100,000 hourly bars (1-2 min)
    .venv/bin/python benchmarks/backtest.py --bars 20000 --repeat 1

Every engine runs the same target exposure over the same window of the same seeded synthetic
candles: the MA crossover (10/30) alone, its signal turned into a long-or-flat target by the
threshold mapping of Agora's rule policies (`strategy_policy`, `SignalMapping()`), computed once
beforehand (precompute is timed on its own row). The costs are comparable: a 0.3 % fee taken as
a fraction of each trade, no gas, a pool deep enough for no price impact.

Rows:

- `agora rule-based`: `run_backtest` of the `TargetPolicy` (the one rollout on the compiled
  kernel: the V2 pool's arithmetic per bar in float64 units, the result's arrays).
- `agora trained policy`: `run_backtest` of a PPO MlpPolicy [64, 64], trained briefly on the
  first bars, as a `ModelPolicy` through `NumpyPolicy` (its network packed for the kernel:
  observation, forward pass and pool math per bar, all compiled), without costs so the briefly
  trained policy is not ruined early.
- `vectorbt from_orders`: `Portfolio.from_orders` with `size_type='targetpercent'` on the same
  targets (a hold as NaN: no order), `fees` the same fraction, fills at the close.
- `backtesting.py rule-based`: the same targets as an indicator, bought in full above 0.5 and
  closed below, fractional units, fills at the close.

Each engine's first call is timed apart (`first call`: vectorbt's Numba compile or cache
load; Agora's kernel compile is printed apart above the table, so its first call is the run's
own set-up); the `bars/s` column is the best of `--repeat` further
calls. Targets (issue 16): rule-based at least 1.0x vectorbt, trained policy
at least 1.0x backtesting.py. Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar (read at tqdm import)

from _common import (
    print_header,
    print_kernel_compile,
    print_table,
    print_targets,
    ratio_target,
    timed,
)

from agent.backtest.engine import (
    BacktestConfig,
    BacktestResult,
    ModelPolicy,
    TargetPolicy,
    frictionless,
    run_backtest,
    strategy_policy,
)
from agent.config import SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.market_data import build_market_data
from agent.plugins.resolve import resolve_strategies

STRATEGY = "ma-crossover"
FEE_BPS = 30
INITIAL_QUOTE = 10_000.0
TRAIN_BARS = 3_000
TRAIN_STEPS = 2_048


def comparable_costs(start: int) -> BacktestConfig:
    """Return the peers' cost model in our pool: fee as commission, no gas, ~no impact."""
    pool = PoolConfig(
        liquidity_quote=1e12, fee_bps=FEE_BPS, gas_price_gwei=0.0, min_trade_quote=0.0
    )
    return BacktestConfig(pool=pool, initial_value_quote=INITIAL_QUOTE, start=start)


def first_and_best(run: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Return (first call's seconds, best of `repeat` further calls' seconds, last result)."""
    first, out = timed(run)
    best = float("inf")
    for _ in range(repeat):
        seconds, out = timed(run)
        best = min(best, seconds)
    return first, best, out


def trained_policy(data: MarketData) -> ModelPolicy:
    """Train PPO briefly on the first bars and return it as a numpy `ModelPolicy`."""
    import stable_baselines3 as sb3
    import torch

    from agent.learn.inference import NumpyPolicy

    torch.set_num_threads(1)
    config = EnvConfig(episode_bars=512)
    env = TradingEnv(data.window(0, TRAIN_BARS), config)
    model = sb3.PPO(
        "MlpPolicy",
        env,
        n_steps=512,
        batch_size=64,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [64, 64]},
    )
    model.learn(total_timesteps=TRAIN_STEPS)
    return ModelPolicy("ppo", NumpyPolicy.from_model(model), config)


def held_as_nan(targets: np.ndarray) -> np.ndarray:
    """Return `targets` with every bar that keeps the previous target as NaN (no order)."""
    out = np.asarray(targets, dtype="float64").copy()
    out[1:][out[1:] == out[:-1]] = np.nan
    return out


def vectorbt_run(close: pd.Series, size: np.ndarray) -> Callable[[], Any]:
    """Return a call of vectorbt's `Portfolio.from_orders` on the targets, or None."""
    import vectorbt as vbt

    def run() -> Any:
        return vbt.Portfolio.from_orders(
            close,
            size,
            size_type="targetpercent",
            fees=FEE_BPS / 10_000,
            init_cash=INITIAL_QUOTE,
            freq="1h",
        )

    return run


def backtesting_run(frame: pd.DataFrame, targets: np.ndarray) -> Callable[[], Any]:
    """Return a call of backtesting.py running the same targets (long above 0.5, else flat)."""
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest

    class Targets(Strategy):
        def init(self) -> None:
            self.target = self.I(lambda: targets, name="target")

        def next(self) -> None:
            if self.target[-1] > 0.5 and not self.position:
                self.buy()
            elif self.target[-1] < 0.5 and self.position:
                self.position.close()

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return FractionalBacktest(
                frame,
                Targets,
                cash=INITIAL_QUOTE,
                commission=FEE_BPS / 10_000,
                trade_on_close=True,
                finalize_trades=False,
                fractional_unit=1e-6,
            ).run()

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000, help="bars of the market")
    parser.add_argument("--repeat", type=int, default=2, help="timed calls after the first")
    args = parser.parse_args(argv)
    print_header(
        ("numpy", "pandas", "numba", "vectorbt", "backtesting", "stable-baselines3"),
        f"{args.bars:,} synthetic 1h bars",
    )
    print_kernel_compile()
    candles = generate(SyntheticSettings(bars=args.bars, seed=7), "1h").candles
    strategies = resolve_strategies([STRATEGY])
    precompute_s, (data, _) = timed(lambda: build_market_data(candles, strategies))
    start = EnvConfig().first_bar
    config = comparable_costs(start)
    end = data.bars - 1
    decisions = end - start
    rule: TargetPolicy = strategy_policy(data, STRATEGY)
    targets = np.clip(rule.targets[start : end + 1], 0.0, 1.0)
    targets[-1] = np.nan  # the last bar only values the run

    rows: list[tuple[Any, ...]] = [
        ("agora precompute (features + signal)", data.bars, "-", precompute_s, "-")
    ]
    figures: dict[str, float] = {}

    def row(label: str, bars: int, first: float | str, best: float) -> None:
        figures[label] = bars / best
        rows.append((label, bars, first, best, bars / best))

    first, best, ours = first_and_best(lambda: run_backtest(data, rule, config), args.repeat)
    row("agora rule-based", decisions, first, best)
    training_s, policy = timed(lambda: trained_policy(data))
    model_config = frictionless(config)
    first, best, _ = first_and_best(lambda: run_backtest(data, policy, model_config), args.repeat)
    row("agora trained policy (numpy inference)", decisions, first, best)

    index = pd.to_datetime(data.open_time[start : end + 1], unit="ms")
    close = pd.Series(data.close[start : end + 1], index=index, name="close")
    vectorbt = None
    try:
        run = vectorbt_run(close, held_as_nan(targets))
    except ImportError:
        print("vectorbt is not installed (pip install -e '.[bench]'): no vectorbt row")
    else:
        first, best, vectorbt = first_and_best(run, args.repeat)
        row("vectorbt from_orders (targetpercent)", len(close), first, best)
    frame = pd.DataFrame(
        {"Open": close, "High": close, "Low": close, "Close": close, "Volume": 1.0}, index=index
    )
    library_run = backtesting_run(frame, np.nan_to_num(targets, nan=0.0))
    first, best, library = first_and_best(library_run, args.repeat)
    row("backtesting.py rule-based", len(close), first, best)

    print(
        f"PPO [64, 64] trained for {TRAIN_STEPS:,} steps on {TRAIN_BARS:,} bars "
        f"in {training_s:.1f} s"
    )
    print_table(("", "bars", "first call s", "best s", "bars/s"), rows)
    print(same_strategy(ours, vectorbt, library))

    targets_met = []
    if vectorbt is not None:
        targets_met.append(
            ratio_target(
                "rule-based backtest bars/s",
                figures["agora rule-based"],
                "vectorbt",
                figures["vectorbt from_orders (targetpercent)"],
                1.0,
            )
        )
    targets_met.append(
        ratio_target(
            "trained-policy backtest bars/s",
            figures["agora trained policy (numpy inference)"],
            "backtesting.py (rule)",
            figures["backtesting.py rule-based"],
            1.0,
        )
    )
    print_targets(targets_met)


def same_strategy(ours: BacktestResult, vectorbt: Any, library: Any) -> str:
    """Return a line comparing the engines' trades and final equity on the same targets."""
    parts = [f"agora {ours.swaps} swaps, final {ours.equity[-1]:,.2f}"]
    if vectorbt is not None:
        parts.append(
            f"vectorbt {vectorbt.orders.count()} orders, final {vectorbt.final_value():,.2f}"
        )
    parts.append(
        f"backtesting.py {library['# Trades']} round trips, "
        f"final {library['Equity Final [$]']:,.2f}"
    )
    return "same targets, same costs: " + "; ".join(parts)


if __name__ == "__main__":
    main()
