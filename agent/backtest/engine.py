"""The backtest engine: policies run bar by bar over precomputed arrays through the DEX pool.

Timing and pool math are the environment's (`agent.env.trading_env`): the decision for bar t
sees data up to the close of t, trades against the pool coupled to bar t's close, and is valued
at the close of t + 1. Model policies are driven through `TradingEnv` itself, so training and
backtesting share one truth; target-path policies (a strategy alone, the baselines) run a tight
loop over the same `MarketCoupledPool` calls in the same order, which a test keeps identical to
the environment bit for bit. Nothing here touches pandas per bar.

Policies:

- `ModelPolicy`: a trained model as a callable observation -> action.
- `TargetPolicy`: a precomputed target exposure per bar: a strategy alone (`strategy_policy`,
  signal -> exposure by a `SignalMapping`, docs/backtesting.md), `buy_and_hold`, `flat`,
  `random_policy` (seeded).

Each decision is hashed (`decision_hash`): keccak256 over a compact canonical encoding chained
to the previous hash, so a run's `decision_head` fingerprints every trade it made.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from eth_utils import keccak

from agent.dex.amm import BASE_DECIMALS, QUOTE_DECIMALS
from agent.dex.pool import MarketCoupledPool, PoolConfig, TradeResult
from agent.env.trading_env import EnvConfig, MarketData, TradingEnv
from agent.errors import ConfigError

PolicyKind = Literal["model", "strategy", "baseline"]
Predict = Callable[[np.ndarray], Any]
"""A trained policy: observation of `TradingEnv` -> action of its action space."""
Progress = Callable[[int, int], None]
"""Called with (decisions done, decisions in total) every few thousand bars."""

BASE_SCALE = 10.0**BASE_DECIMALS
QUOTE_SCALE = 10.0**QUOTE_DECIMALS
GENESIS_HASH = bytes(32)
"""The `prev_hash` of a run's first decision."""
SIDE_CODE: dict[str, int] = {"none": 0, "buy": 1, "sell": -1}
RUIN_FRACTION = 0.01
"""A run stops when the portfolio is worth this fraction of its start value (as the env)."""
_PROGRESS_EVERY = 5_000
_RECORD = struct.Struct(">qIb")


# --- decision hashing -------------------------------------------------------------------


def decision_hash(
    prev_hash: bytes,
    open_time_ms: int,
    target_exposure: float,
    side: int,
    base_balance: int,
    quote_balance: int,
) -> bytes:
    """Return keccak256 of one decision's canonical encoding, chained to the previous hash.

    Encoding (109 bytes): prev_hash (32) | open_time_ms int64 | target exposure in parts per
    million uint32 | side int8 (+1 buy, -1 sell, 0 none) | base balance after uint256 | quote
    balance after uint256; integers big-endian. The audit module formalises this record later.
    """
    ppm = round(target_exposure * 1_000_000)
    return keccak(
        prev_hash
        + _RECORD.pack(open_time_ms, ppm, side)
        + base_balance.to_bytes(32, "big")
        + quote_balance.to_bytes(32, "big")
    )


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


@dataclass(frozen=True)
class TargetPolicy:
    """A policy given as a wanted exposure for every bar of the data.

    Attributes:
        name: shown in tables and reports.
        kind: 'strategy' or 'baseline' (or 'model' for a replayed model run).
        targets: wanted exposure per bar; NaN holds the current position.
        rebalance_band: trade only when the wanted exposure differs from the current one by
            at least this much; otherwise hold (the decision's target is the current exposure).
    """

    name: str
    kind: PolicyKind
    targets: np.ndarray
    rebalance_band: float = 0.0


@dataclass(frozen=True)
class ModelPolicy:
    """A trained model: `predict(observation) -> action`, with the environment it was trained in.

    The backtest keeps the model's observation settings (look-back, action space, exposure
    levels) and replaces its costs (pool, starting value) with the backtest's.
    """

    name: str
    predict: Predict
    env_config: EnvConfig = field(default_factory=EnvConfig)
    model_id: str | None = None
    strategy_names: tuple[str, ...] | None = None
    """The strategies whose signals the model was trained on, in order (None: unchecked)."""


Policy = TargetPolicy | ModelPolicy


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


def buy_and_hold(data: MarketData) -> TargetPolicy:
    """Return the buy-and-hold baseline: fully invested from the first decision."""
    return TargetPolicy("buy-and-hold", "baseline", np.ones(data.bars))


def flat(data: MarketData) -> TargetPolicy:
    """Return the flat baseline: always in cash (never trades)."""
    return TargetPolicy("flat", "baseline", np.zeros(data.bars))


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


# --- configuration and results ----------------------------------------------------------


@dataclass(frozen=True)
class BacktestConfig:
    """Where and at what cost a backtest runs.

    Attributes:
        pool: the simulated pool (depth, fee, gas).
        initial_value_quote: starting portfolio, all in the quote currency (USD).
        start: first decision bar (the default leaves the env's feature warm-up).
        end: bar of the final valuation; decisions run on bars [start, end). Default: last bar.
        hash_decisions: chain a keccak256 hash over every decision.
    """

    pool: PoolConfig = field(default_factory=PoolConfig)
    initial_value_quote: float = 10_000.0
    start: int | None = None
    end: int | None = None
    hash_decisions: bool = True

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


@dataclass(frozen=True)
class BacktestResult:
    """Everything one policy did in one run; arrays of values at closes and per decision.

    `equity`, `open_time` and `close` hold one entry per valuation bar (start .. end: one
    more than decisions); the other arrays hold one entry per decision. Money is in the quote
    currency (USD); `base` is in base tokens.
    """

    name: str
    kind: PolicyKind
    start: int
    open_time: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    target: np.ndarray
    exposure: np.ndarray
    side: np.ndarray
    traded_quote: np.ndarray
    fee_quote: np.ndarray
    impact_quote: np.ndarray
    gas_quote: np.ndarray
    base: np.ndarray
    quote: np.ndarray
    decision_head: str | None = None
    terminated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    decision_hashes: tuple[bytes, ...] = field(default=(), repr=False)
    """Each decision's hash (the chain ending in `decision_head`), when hashing was on."""

    @property
    def decisions(self) -> int:
        return len(self.target)

    @property
    def swaps(self) -> int:
        return int(np.count_nonzero(self.side))


class _Recorder:
    """Collects per-decision values in lists (cheap appends), then freezes them into arrays."""

    def __init__(self, hash_decisions: bool) -> None:
        self.hashing = hash_decisions
        self.head = GENESIS_HASH
        self.hashes: list[bytes] = []
        self.columns: dict[str, list[float]] = {
            name: []
            for name in (
                "equity",
                "target",
                "exposure",
                "side",
                "traded",
                "fee",
                "impact",
                "gas",
                "base",
                "quote",
            )
        }

    def decision(
        self,
        open_time_ms: int,
        target: float,
        side: str,
        costs_quote: tuple[float, float, float],
        balances: tuple[int, int],
        base_before: int,
        price: float,
        value_after: float,
    ) -> None:
        """Record one decision: the trade's side, (fee, impact, gas) in USD and balances after."""
        c = self.columns
        base, quote = balances
        held = base / BASE_SCALE * price
        value_now = held + quote / QUOTE_SCALE
        code = SIDE_CODE[side]
        c["equity"].append(value_after)
        c["target"].append(target)
        c["exposure"].append(held / value_now if value_now > 0 else 0.0)
        c["side"].append(code)
        c["traded"].append(abs(base - base_before) / BASE_SCALE * price)
        c["fee"].append(costs_quote[0])
        c["impact"].append(costs_quote[1])
        c["gas"].append(costs_quote[2])
        c["base"].append(base / BASE_SCALE)
        c["quote"].append(quote / QUOTE_SCALE)
        if self.hashing:
            self.head = decision_hash(self.head, open_time_ms, target, code, base, quote)
            self.hashes.append(self.head)

    def result(
        self, name: str, kind: PolicyKind, data: MarketData, start: int, initial: float, **kw: Any
    ) -> BacktestResult:
        c = self.columns
        n = len(c["target"])
        return BacktestResult(
            name=name,
            kind=kind,
            start=start,
            open_time=np.asarray(data.open_time[start : start + n + 1]),
            close=np.asarray(data.close[start : start + n + 1], dtype="float64"),
            equity=np.array([initial, *c["equity"]], dtype="float64"),
            target=np.array(c["target"], dtype="float64"),
            exposure=np.array(c["exposure"], dtype="float64"),
            side=np.array(c["side"], dtype="int8"),
            traded_quote=np.array(c["traded"], dtype="float64"),
            fee_quote=np.array(c["fee"], dtype="float64"),
            impact_quote=np.array(c["impact"], dtype="float64"),
            gas_quote=np.array(c["gas"], dtype="float64"),
            base=np.array(c["base"], dtype="float64"),
            quote=np.array(c["quote"], dtype="float64"),
            decision_head="0x" + self.head.hex() if self.hashing else None,
            decision_hashes=tuple(self.hashes),
            **kw,
        )


# --- running ----------------------------------------------------------------------------


def run_backtest(
    data: MarketData,
    policy: Policy,
    config: BacktestConfig | None = None,
    *,
    progress: Progress | None = None,
) -> BacktestResult:
    """Run one policy over `data` with the environment's timing and pool math.

    Args:
        data: the market's precomputed arrays.
        policy: a `ModelPolicy` (driven through `TradingEnv`) or a `TargetPolicy`.
        config: costs, starting value and window.
        progress: optional callback (done, total).
    """
    config = config or BacktestConfig()
    if isinstance(policy, ModelPolicy):
        return _run_model(data, policy, config, progress)
    return run_targets(data, policy, config, progress=progress)


def run_targets(
    data: MarketData,
    policy: TargetPolicy,
    config: BacktestConfig,
    *,
    progress: Progress | None = None,
) -> BacktestResult:
    """Run a target-path policy in a tight loop: the env's `step` without the observation."""
    start, end = config.window(data)
    if len(policy.targets) != data.bars:
        raise ConfigError(
            f"policy {policy.name!r} has {len(policy.targets)} targets for {data.bars} bars"
        )
    close = np.asarray(data.close, dtype="float64").tolist()
    times = np.asarray(data.open_time, dtype="int64").tolist()
    targets = np.clip(np.asarray(policy.targets, dtype="float64"), 0.0, 1.0).tolist()
    band = policy.rebalance_band
    initial = config.initial_value_quote
    pool = MarketCoupledPool(config.pool)
    pool.reset(close[start])
    base, quote = 0, round(initial * QUOTE_SCALE)
    record = _Recorder(config.hash_decisions)
    ruin = RUIN_FRACTION * initial
    terminated = False
    total = end - start
    for t in range(start, end):
        price = close[t]
        target = targets[t]
        if band > 0.0 or target != target:  # NaN: hold
            held = base / BASE_SCALE * price
            exposure = min(1.0, held / (held + quote / QUOTE_SCALE)) if base or quote else 0.0
            if target != target or abs(target - exposure) < band:
                target = exposure
        trade = pool.trade_to_exposure(base, quote, target, price)
        base_before = base
        base, quote = trade.base_balance, trade.quote_balance
        next_price = close[t + 1]
        value_after = base / BASE_SCALE * next_price + quote / QUOTE_SCALE
        pool.couple(next_price)
        record.decision(
            times[t],
            target,
            trade.side,
            _costs(trade),
            (base, quote),
            base_before,
            price,
            value_after,
        )
        if progress is not None and (t - start + 1) % _PROGRESS_EVERY == 0:
            progress(t - start + 1, total)
        if value_after <= ruin:
            terminated = True
            break
    if progress is not None:
        progress(total, total)
    return record.result(policy.name, policy.kind, data, start, initial, terminated=terminated)


def env_config_for(policy: ModelPolicy, config: BacktestConfig, start: int) -> EnvConfig:
    """Return the model's environment settings with the backtest's costs and window."""
    env = policy.env_config
    if start < env.lookback_bars - 1:
        raise ConfigError(
            f"model {policy.name!r} looks back {env.lookback_bars} bars: the first decision "
            f"must be at bar {env.lookback_bars - 1} or later, not {start}"
        )
    return replace(
        env,
        pool=config.pool,
        initial_value_quote=config.initial_value_quote,
        first_bar=env.lookback_bars - 1,
        strategy_dropout=0.0,
    )


def _run_model(
    data: MarketData, policy: ModelPolicy, config: BacktestConfig, progress: Progress | None
) -> BacktestResult:
    start, end = config.window(data)
    env = TradingEnv(data, env_config_for(policy, config, start))
    close = np.asarray(data.close, dtype="float64").tolist()
    times = np.asarray(data.open_time, dtype="int64").tolist()
    visible = np.ones(data.n_strategies, dtype=bool)
    obs, _ = env.reset(options={"start": start, "end": end, "strategy_mask": visible})
    record = _Recorder(config.hash_decisions)
    predict = policy.predict
    terminated = False
    total = end - start
    for t in range(start, end):
        base_before = env.portfolio[0]
        obs, _, terminated, truncated, info = env.step(predict(obs))
        costs = (info["fee_quote"], info["impact_quote"], info["gas_quote"])
        target = float(info["target_exposure"])
        record.decision(
            times[t],
            target,
            info["side"],
            costs,
            env.portfolio,
            base_before,
            close[t],
            info["value_quote"],
        )
        if progress is not None and (t - start + 1) % _PROGRESS_EVERY == 0:
            progress(t - start + 1, total)
        if terminated or truncated:
            break
    if progress is not None:
        progress(total, total)
    return record.result(
        policy.name,
        "model",
        data,
        start,
        config.initial_value_quote,
        terminated=terminated,
        extra={"model_id": policy.model_id} if policy.model_id else {},
    )


def replay_policy(result: BacktestResult, bars: int) -> TargetPolicy:
    """Return the targets a finished run decided, as a policy over `bars` bars (for --onchain)."""
    targets = np.zeros(bars)
    targets[result.start : result.start + result.decisions] = result.target
    return TargetPolicy(result.name, result.kind, targets)


def frictionless(config: BacktestConfig, depth_quote: float = 1e15) -> BacktestConfig:
    """Return `config` without costs: no fee, no gas, no minimum trade, a bottomless pool."""
    pool = replace(
        config.pool, fee_bps=0, gas_price_gwei=0.0, min_trade_quote=0.0, liquidity_quote=depth_quote
    )
    return replace(config, pool=pool)


def same_run(a: BacktestResult, b: BacktestResult) -> bool:
    """Return whether two results made identical decisions with identical outcomes."""
    names = ("equity", "target", "side", "base", "quote", "fee_quote", "impact_quote", "gas_quote")
    return a.decision_head == b.decision_head and all(
        np.array_equal(getattr(a, n), getattr(b, n)) for n in names
    )


def _costs(trade: TradeResult) -> tuple[float, float, float]:
    """Return a trade's (fee, impact, gas) in USD, computed exactly as the env's `info`."""
    return (
        trade.fee_paid_quote / QUOTE_SCALE,
        trade.price_impact_quote / QUOTE_SCALE,
        trade.gas_quote / QUOTE_SCALE,
    )
