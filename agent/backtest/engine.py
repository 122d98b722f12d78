"""The backtest engine: policies run bar by bar over precomputed arrays through the DEX pool.

Every run goes through the one rollout (`agent.env.rollout.rollout`), so the timing and pool
math are the environment's: the decision for bar t sees data up to the close of t, trades
against the pool coupled to bar t's close, and is valued at the close of t + 1. This module
adds what is particular to backtests: rule-based policies built from a strategy's signal, the
baselines, and the backtest's window and costs. Nothing here touches pandas per bar.

Policies (`agent.env.rollout`):

- `ModelPolicy`: a trained model as a callable observation -> action.
- `TargetPolicy`: a precomputed target exposure per bar: a strategy alone (`strategy_policy`,
  signal -> exposure by a `SignalMapping`, docs/backtesting.md), `buy_and_hold`, `flat`,
  `random_policy` (seeded).

A result's `fingerprint` (sha256 over its decisions and outcomes, hashed once) identifies a run
in the results JSON; it is not a decision record and never goes on-chain. Decisions that go
on-chain are `agent.audit.record` DecisionRecords (`agent.backtest.onchain`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from agent.dex.pool import PoolConfig
from agent.env.rollout import (
    SIDE_CODE,
    ModelPolicy,
    Policy,
    PolicyKind,
    Predict,
    RolloutResult,
    Step,
    StepCallback,
    TargetPolicy,
    buy_and_hold,
    flat,
    rollout,
)
from agent.env.trading_env import EnvConfig, MarketData
from agent.errors import ConfigError

BacktestResult = RolloutResult
"""A backtest's result is the rollout's result (one result type)."""
Progress = Callable[[int, int], None]
"""Called with (decisions done, decisions in total) every few thousand bars."""

__all__ = [
    "SIDE_CODE",
    "BacktestConfig",
    "BacktestResult",
    "ModelPolicy",
    "Policy",
    "PolicyKind",
    "Predict",
    "SignalMapping",
    "TargetPolicy",
    "buy_and_hold",
    "flat",
    "frictionless",
    "random_policy",
    "run_backtest",
    "same_run",
    "same_trades",
    "signal_to_target",
    "strategy_policy",
]
_PROGRESS_EVERY = 5_000


# --- policies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SignalMapping:
    """How a strategy's signal in [-1, 1] becomes a target exposure in [0, 1] without churn.

    Attributes:
        kind: 'threshold' (default): all in once the signal rises above `enter_above`, all
            out once it falls below `exit_below`, otherwise hold (hysteresis: a signal
            wandering around a single level does not flip the position every bar).
            'proportional': the wanted exposure is (signal + 1) / 2, and the portfolio is
            rebalanced only when it differs from the current exposure by at least
            `min_change` (a no-trade band: price drift alone does not cause trades).
        min_change: the no-trade band of the proportional mapping.
        enter_above: entry level of the threshold mapping.
        exit_below: exit level of the threshold mapping (at most `enter_above`).

    While the signal is unavailable (warm-up, failed plugin) the position is held; a run
    starts in cash.
    """

    kind: Literal["proportional", "threshold"] = "threshold"
    min_change: float = 0.2
    enter_above: float = 0.1
    exit_below: float = -0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_change <= 1.0:
            raise ConfigError(f"mapping.min_change is {self.min_change}; expected [0, 1]")
        if not -1.0 <= self.exit_below <= self.enter_above <= 1.0:
            raise ConfigError(
                f"mapping.exit_below ({self.exit_below}) and enter_above ({self.enter_above}) "
                "must satisfy -1 <= exit_below <= enter_above <= 1"
            )


def signal_to_target(signal: np.ndarray, mask: np.ndarray, mapping: SignalMapping) -> np.ndarray:
    """Return the wanted exposure of every bar from one strategy's signal (causal).

    NaN means "hold the current position". The value at bar t depends on signals up to t
    only. For the proportional mapping, the no-trade band is applied by the engine against
    the actual exposure (`TargetPolicy.rebalance_band`).
    """
    values = np.asarray(signal, dtype="float64")
    available = np.asarray(mask, dtype=bool)
    if mapping.kind == "proportional":
        return np.where(available, np.clip((values + 1.0) / 2.0, 0.0, 1.0), np.nan)
    out = np.empty(len(values), dtype="float64")
    current = 0.0
    enter, leave = mapping.enter_above, mapping.exit_below
    for t, (value, ok) in enumerate(zip(values.tolist(), available.tolist(), strict=True)):
        if ok:
            if value > enter:
                current = 1.0
            elif value < leave:
                current = 0.0
        out[t] = current
    return out


def strategy_policy(
    data: MarketData, strategy: str, mapping: SignalMapping | None = None
) -> TargetPolicy:
    """Return one strategy alone as a rule-based policy (its signal column in `data`)."""
    if strategy not in data.strategy_names:
        raise ConfigError(
            f"strategy {strategy!r} is not in the data (it has {', '.join(data.strategy_names)})"
        )
    column = data.strategy_names.index(strategy)
    mapping = mapping or SignalMapping()
    targets = signal_to_target(data.signals[:, column], data.mask[:, column], mapping)
    band = mapping.min_change if mapping.kind == "proportional" else 0.0
    return TargetPolicy(strategy, "strategy", targets, band)


def random_policy(
    data: MarketData,
    seed: int,
    levels: Sequence[float] = (0.0, 1.0),
    hold_bars: int = 24,
) -> TargetPolicy:
    """Return the seeded random baseline: a uniformly drawn level, redrawn every `hold_bars`.

    The draw for bar t depends only on the seed and t, never on the market.
    """
    if hold_bars < 1 or not levels:
        raise ConfigError("random baseline: hold_bars must be >= 1 and levels non-empty")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(levels), size=-(-data.bars // hold_bars))
    targets = np.asarray(levels, dtype="float64")[np.repeat(draws, hold_bars)[: data.bars]]
    return TargetPolicy("random", "baseline", targets)


# --- configuration and running -----------------------------------------------------------


@dataclass(frozen=True)
class BacktestConfig:
    """Where and at what cost a backtest runs.

    Attributes:
        pool: the simulated pool (depth, fee, gas).
        initial_value_quote: starting portfolio, all in the quote currency (USD).
        start: first decision bar (the default leaves the env's feature warm-up).
        end: bar of the final valuation; decisions run on bars [start, end). Default: last bar.
    """

    pool: PoolConfig = field(default_factory=PoolConfig)
    initial_value_quote: float = 10_000.0
    start: int | None = None
    end: int | None = None

    def window(self, data: MarketData) -> tuple[int, int]:
        """Return (start, end) for `data`, checked."""
        start = EnvConfig().first_bar if self.start is None else self.start
        end = data.bars - 1 if self.end is None else self.end
        if not 0 <= start < end <= data.bars - 1:
            raise ConfigError(
                f"backtest window: decisions on bars [{start}, {end}) must lie within "
                f"[0, {data.bars - 1}) of the {data.bars} bars"
            )
        return start, end

    def env_config(self) -> EnvConfig:
        """Return the environment of the run: these costs and starting value, no penalty."""
        return EnvConfig(pool=self.pool, initial_value_quote=self.initial_value_quote)


def run_backtest(
    data: MarketData,
    policy: Policy,
    config: BacktestConfig | None = None,
    *,
    progress: Progress | None = None,
    callback: StepCallback | None = None,
    exact: bool = False,
) -> BacktestResult:
    """Run one policy over `data` with the environment's timing and pool math (the rollout).

    Args:
        data: the market's precomputed arrays.
        policy: a `ModelPolicy` or a `TargetPolicy`.
        config: costs, starting value and window.
        progress: optional callback (done, total).
        callback: optional per-step callback (`agent.env.rollout.Step`); the run then goes
            through the exact integer mirror, bar by bar.
        exact: run the exact integer mirror even without a callback (the on-chain parity check).
    """
    config = config or BacktestConfig()
    start, end = config.window(data)
    step_callback = callback
    if progress is not None and callback is not None:
        report, total = progress, end - start

        def step_callback(step: Step) -> None:
            callback(step)
            if (step.t - start + 1) % _PROGRESS_EVERY == 0:
                report(step.t - start + 1, total)

    return rollout(
        data,
        policy,
        config.env_config(),
        start,
        end,
        callback=step_callback,
        exact=exact,
        progress=progress,
    )


def frictionless(config: BacktestConfig, depth_quote: float = 1e15) -> BacktestConfig:
    """Return `config` without costs: no fee, no gas, no minimum trade, a bottomless pool."""
    pool = replace(
        config.pool, fee_bps=0, gas_price_gwei=0.0, min_trade_quote=0.0, liquidity_quote=depth_quote
    )
    return replace(config, pool=pool)


def same_run(a: BacktestResult, b: BacktestResult) -> bool:
    """Return whether two results made identical decisions with identical outcomes."""
    names = ("equity", "target", "side", "base", "quote", "fee_quote", "impact_quote", "gas_quote")
    return all(np.array_equal(getattr(a, n), getattr(b, n)) for n in names)


def same_trades(kernel: BacktestResult, exact: BacktestResult) -> bool:
    """Return whether a kernel run made the exact mirror's trades at the same bars, with money
    equal within the kernel's documented bound (`agent.env.kernel.EQUITY_RTOL`)."""
    from agent.env.kernel import EQUITY_RTOL

    if kernel.decisions != exact.decisions or not np.array_equal(kernel.side, exact.side):
        return False
    scale = float(np.max(np.abs(exact.equity)))
    names = ("equity", "base", "quote", "fee_quote", "impact_quote", "gas_quote", "traded_quote")
    return all(
        np.allclose(getattr(kernel, n), getattr(exact, n), rtol=0, atol=EQUITY_RTOL * scale)
        for n in names
    )
