"""Backtest throughput: bars per second of Agora's engine, with backtesting.py measured alongside.

    .venv/bin/python benchmarks/backtest.py            # 100,000 hourly bars (about a minute)
    .venv/bin/python benchmarks/backtest.py --bars 20000

Rows, all on the same seeded synthetic market:

- `agora rule-based`: the MA crossover (10/30) alone as a long-or-flat policy through the
  engine's target loop: V2 pool math (integer), costs, and a keccak256 hash per decision. The
  costs are the library's (fee as commission, no gas, a pool deep enough for no impact), so the
  last line compares the two engines' trades and final equity.
  Signals and features are precomputed once (timed separately in `agora precompute`).
- `agora trained policy`: a PPO policy (trained briefly on the first bars) driven through
  TradingEnv: observation, numpy inference (`agent.learn.inference.NumpyPolicy`), pool math and
  a decision hash per bar (without costs, so the briefly trained policy is not ruined early).
- `backtesting.py rule-based`: the same strategy in backtesting.py (its SMA indicators, its
  broker with a proportional commission, fills at the bar's close), fractional units.

Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from agent.backtest import engine
from agent.backtest.engine import BacktestConfig, ModelPolicy, SignalMapping
from agent.backtest.runner import market_data
from agent.config import SyntheticSettings
from agent.dex.pool import PoolConfig
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.market.synthetic import generate
from agent.plugins.signals import compute_signals
from strategies import MACrossover

FAST, SLOW = 10, 30
FEE_BPS = 30
TRAIN_BARS = 3_000
TRAIN_STEPS = 2_048


def timed(label: str, bars: int, run: Callable[[], Any]) -> tuple[str, int, float, Any]:
    started = time.perf_counter()
    out = run()
    return label, bars, time.perf_counter() - started, out


def comparable_costs(start: int) -> BacktestConfig:
    """Return the library's cost model in our pool: fee as commission, no gas, ~no impact."""
    pool = PoolConfig(
        liquidity_quote=1e12, fee_bps=FEE_BPS, gas_price_gwei=0.0, min_trade_quote=0.0
    )
    return BacktestConfig(pool=pool, start=start)


def agora_rule(data: MarketData, start: int) -> engine.BacktestResult:
    policy = engine.strategy_policy(data, MACrossover.name, SignalMapping("threshold", 0, 0, 0))
    return engine.run_targets(data, policy, comparable_costs(start))


def trained_policy(data: MarketData) -> ModelPolicy:
    import stable_baselines3 as sb3
    import torch

    from agent.learn.inference import NumpyPolicy

    torch.set_num_threads(1)
    cfg = EnvConfig(episode_bars=512)
    env = TradingEnv(data.window(0, TRAIN_BARS), cfg)
    model = sb3.PPO("MlpPolicy", env, n_steps=512, batch_size=64, seed=0, device="cpu")
    model.learn(total_timesteps=TRAIN_STEPS)
    return ModelPolicy("ppo", NumpyPolicy.from_model(model), cfg)


def library_rule(candles: pd.DataFrame, start: int) -> Any:
    from backtesting import Strategy
    from backtesting.lib import FractionalBacktest
    from backtesting.test import SMA

    class LongOrFlat(Strategy):
        def init(self) -> None:
            self.fast = self.I(SMA, self.data.Close, FAST)
            self.slow = self.I(SMA, self.data.Close, SLOW)

        def next(self) -> None:
            if self.fast[-1] > self.slow[-1] and not self.position:
                self.buy()
            elif self.fast[-1] < self.slow[-1] and self.position:
                self.position.close()

    frame = candles.rename(columns=str.capitalize).set_index(
        pd.to_datetime(candles["open_time"], unit="ms")
    )[["Open", "High", "Low", "Close", "Volume"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backtest = FractionalBacktest(
            frame,
            LongOrFlat,
            cash=10_000,
            commission=FEE_BPS / 10_000,
            trade_on_close=True,
            finalize_trades=False,
            fractional_unit=1e-6,
        )
        return backtest.run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=100_000, help="bars of the market")
    args = parser.parse_args()
    import backtesting

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, pandas {pd.__version__}, "
        f"backtesting {backtesting.__version__}; {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; {args.bars:,} synthetic 1h bars"
    )
    candles = generate(SyntheticSettings(bars=args.bars, seed=7), "1h").candles

    def precompute() -> MarketData:
        signals = compute_signals([MACrossover], candles, key=None)
        return market_data(candles, signals.values, signals.mask, signals.names)

    rows = []
    label, n, seconds, data = timed("agora precompute (features + signal)", args.bars, precompute)
    rows.append((label, n, seconds))
    start = EnvConfig().first_bar
    decisions = args.bars - 1 - start
    rule = timed("agora rule-based (pool + hashing)", decisions, lambda: agora_rule(data, start))
    rows.append((rule[0], rule[3].decisions, rule[2]))
    policy = trained_policy(data)
    model = timed(
        "agora trained policy (inference + pool + hashing)",
        decisions,
        # no costs, so a briefly trained (churning) policy is not ruined before the end
        lambda: engine.run_backtest(data, policy, engine.frictionless(comparable_costs(start))),
    )
    rows.append((model[0], model[3].decisions, model[2]))
    lib = timed("backtesting.py rule-based", args.bars, lambda: library_rule(candles, start))
    rows.append(lib[:3])

    width = max(len(r[0]) for r in rows)
    print(f"{'':{width}}  {'bars':>9}  {'seconds':>8}  {'bars/s':>10}")
    for label, bars, seconds in rows:
        print(f"{label:{width}}  {bars:>9,}  {seconds:>8.2f}  {bars / seconds:>10,.0f}")
    ours, theirs = rule[3], lib[3]
    closed = sum(1 for t in engine_trips(ours) if t)
    print(
        f"same strategy, same costs: closed trades agora {closed}, backtesting.py "
        f"{theirs['# Trades']}; final equity agora {ours.equity[-1]:,.2f}, backtesting.py "
        f"{theirs['Equity Final [$]']:,.2f}"
    )


def engine_trips(result: engine.BacktestResult) -> list[bool]:
    from agent.backtest.metrics import round_trips

    costs = result.fee_quote + result.impact_quote + result.gas_quote
    return [t.exit is not None for t in round_trips(result.exposure, result.equity, costs)]


if __name__ == "__main__":
    main()
