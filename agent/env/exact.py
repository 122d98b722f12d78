"""The exact path of the one rollout: the agent's book on the integer V2 mirror, bar by bar.

`agent.env.rollout.rollout` comes here when a run has a per-step callback (the `--onchain`
backtest sends each step to the chain, so each step must carry the mirror's wei) or is asked
to be exact (the parity checks). Everything else runs on the compiled kernel
(`agent.env.kernel`), which reproduces this path in float64 within its documented bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from agent.dex.pool import MarketCoupledPool
from agent.env.rollout import (
    SIDE_CODE,
    ModelPolicy,
    Policy,
    Step,
    StepCallback,
    checked_targets,
    execute_target,
)
from agent.env.spec import BASE_SCALE, QUOTE_SCALE

if TYPE_CHECKING:
    from agent.env.trading_env import EnvConfig, MarketData


class _Recorder:
    """Collects per-decision values in lists (cheap appends), then freezes them into arrays."""

    __slots__ = ("columns",)

    def __init__(self) -> None:
        self.columns: tuple[list[float], ...] = tuple([] for _ in range(12))

    def add(self, step: Step, price: float) -> None:
        trade = step.fill.trade
        c = self.columns
        base_units, quote_units = step.base, step.quote
        held_value = base_units / BASE_SCALE * price
        value_now = held_value + quote_units / QUOTE_SCALE
        c[0].append(step.value_after)
        c[1].append(step.target)
        c[2].append(step.exposure_before)
        c[3].append(held_value / value_now if value_now > 0 else 0.0)
        c[4].append(SIDE_CODE[trade.side])
        c[5].append(abs(base_units - step.base_before) / BASE_SCALE * price)
        c[6].append(trade.fee_paid_quote / QUOTE_SCALE)
        c[7].append(trade.price_impact_quote / QUOTE_SCALE)
        c[8].append(trade.gas_quote / QUOTE_SCALE)
        c[9].append(base_units / BASE_SCALE)
        c[10].append(quote_units / QUOTE_SCALE)
        c[11].append(step.reward)

    def rows(self) -> np.ndarray:
        """Return the decisions as [`COLUMNS`, decisions] (the kernel's layout)."""
        return np.array(self.columns, dtype="float64").reshape(len(self.columns), -1)


class ExactBook:
    """The agent's balances traded through the exact integer mirror pool, bar by bar.

    What a callback sees (`Step`, with the mirror's `Fill`) and what goes on-chain come from
    here; the kernel reproduces it in float64 (`agent.env.kernel`).
    """

    def __init__(self, data: MarketData, config: EnvConfig, start: int) -> None:
        self.config = config
        self.closes: list[float] = np.asarray(data.close, dtype="float64").tolist()
        self.pool = MarketCoupledPool(config.pool)
        self.pool.reset(self.closes[start])
        self.t = start
        self.base = 0
        self.quote = round(config.initial_value_quote * QUOTE_SCALE)

    def value(self, price: float) -> float:
        return self.base / BASE_SCALE * price + self.quote / QUOTE_SCALE

    def exposure_now(self) -> float:
        price = self.closes[self.t]
        value = self.value(price)
        return (self.base / BASE_SCALE * price) / value if value > 0 else 0.0

    def advance(self, target: float, observation: np.ndarray | None = None) -> Step:
        """Decide the current bar with `target` exposure and move to the next bar.

        The pool is coupled to the bar's close and the portfolio rebalanced (`execute_target`);
        the reward is the log change of value from this close (before the trade) to the next
        one, minus the turnover penalty.
        """
        t = self.t
        price = self.closes[t]
        base_before = self.base
        value_before = self.value(price)
        exposure_before = self.exposure_now()
        fill = execute_target(self.pool, self.base, self.quote, target, price)
        trade = fill.trade
        self.base, self.quote = trade.base_balance, trade.quote_balance
        value_after = self.value(self.closes[t + 1])
        reward = math.log(value_after / value_before) if value_after > 0 else -10.0
        if trade.side != "none":
            reward -= self.config.turnover_penalty * abs(target - exposure_before)
        self.t = t + 1
        return Step(
            t=t,
            observation=observation,
            target=target,
            exposure_before=exposure_before,
            fill=fill,
            base_before=base_before,
            base=self.base,
            quote=self.quote,
            value_before=value_before,
            value_after=value_after,
            reward=float(reward),
            terminated=value_after <= 0.01 * self.config.initial_value_quote,
        )


def exact_rows(
    data: MarketData,
    policy: Policy,
    cfg: EnvConfig,
    start: int,
    end: int,
    visible: np.ndarray,
    callback: StepCallback | None,
) -> tuple[np.ndarray, bool]:
    book = ExactBook(data, cfg, start)
    record = _Recorder()
    close = book.closes
    decide = _decider(book, data, policy, cfg, visible)
    for t in range(start, end):
        target, observation = decide(t)
        step = book.advance(target, observation)
        record.add(step, close[t])
        if callback is not None:
            callback(step)
        if step.terminated:
            return record.rows(), True
    return record.rows(), False


def _decider(
    book: ExactBook, data: MarketData, policy: Policy, cfg: EnvConfig, visible: np.ndarray
) -> Callable[[int], tuple[float, np.ndarray | None]]:
    """Return bar -> (target exposure, what the policy observed) for a policy on the mirror."""
    if isinstance(policy, ModelPolicy):
        predict, spec = policy.predict, cfg.spec(data.strategy_names)
        features = np.ascontiguousarray(data.features, dtype=np.float32)
        signals = np.ascontiguousarray(data.signals, dtype=np.float32)
        mask = np.ascontiguousarray(data.mask, dtype=bool)

        def model(t: int) -> tuple[float, np.ndarray | None]:
            observation = spec.observe(features, signals, mask, t, book.exposure_now(), visible)
            return spec.target_exposure(predict(observation)), observation

        return model
    targets = checked_targets(policy, data.bars).tolist()
    band = policy.rebalance_band

    def rule(t: int) -> tuple[float, np.ndarray | None]:
        target = targets[t]
        if band > 0.0 or target != target:  # NaN: hold
            now = book.exposure_now()
            if target != target or abs(target - now) < band:
                target = min(1.0, now)
        return target, None

    return rule
