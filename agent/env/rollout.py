"""The one rollout: a policy run through a window of a market, bar by bar, with a callback.

Everything that runs a policy over bars goes through `rollout`: training validation and the
test split, the promotion gate, the backtest engine (off-chain and `--onchain`, through a
per-step callback that sends each trade), attribution's masked re-runs and walk-forward. It is
to Agora what `evaluate_policy` is to stable-baselines3: one loop, a per-step callback.

A run goes through the compiled kernel (`agent.env.kernel`: the bar loop and, for a packed MLP
policy, its forward pass), the same bar `TradingEnv.step` calls. A run with a per-step callback
or `exact=True` goes through the exact integer mirror instead (`agent.env.exact`, bar by bar
through `execute_target`: couple the pool to the bar's price, rebalance with the integer V2
math), which is also how the service decides its live bars; the kernel reproduces it within
`kernel.EQUITY_RTOL`, trade for trade.

Policies:

- `ModelPolicy`: a trained model (`predict(observation) -> action`) and the environment it was
  trained in; it observes through the `PolicySpec`.
- `TargetPolicy`: a wanted exposure per bar (a strategy alone, a baseline): NaN holds the
  position, and `rebalance_band` skips changes smaller than the band.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from agent.dex.amm import PoolState, SwapResult
from agent.dex.pool import MarketCoupledPool, TradeResult
from agent.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from agent.env.trading_env import EnvConfig, MarketData

PolicyKind = Literal["model", "strategy", "baseline"]
Predict = Callable[[np.ndarray], Any]
"""A trained policy: observation -> action of its action space."""
SIDE_CODE: dict[str, int] = {"none": 0, "buy": 1, "sell": -1}


# --- one bar -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fill:
    """One bar's execution: the arbitrage that coupled the pool to the price, then the trade.

    Attributes:
        arbitrage: the swap that moved the pool to the bar's price (None if it was there).
        pool_coupled: the reserves after the arbitrage, before the trade.
        trade: the agent's rebalance (side 'none' when skipped).
        pool_after: the reserves after the trade.
    """

    arbitrage: SwapResult | None
    pool_coupled: PoolState
    trade: TradeResult
    pool_after: PoolState


def execute_target(
    pool: MarketCoupledPool, base: int, quote: int, target: float, price: float
) -> Fill:
    """Couple `pool` to `price`, then rebalance (base, quote) towards `target` exposure."""
    arbitrage = pool.couple(price)
    coupled = pool.state
    trade = pool.trade_to_exposure(base, quote, target, price)
    assert coupled is not None and pool.state is not None
    return Fill(arbitrage, coupled, trade, pool.state)


@dataclass(frozen=True, slots=True)
class Step:
    """What one decision did, as the per-step callback sees it.

    Attributes:
        t: the bar decided on.
        observation: what the policy saw (None for a target policy).
        target: the target exposure the decision aimed at.
        exposure_before: the exposure at bar t's close before the trade.
        fill: the execution (arbitrage and trade).
        base_before: base balance before the trade (units).
        base: base balance after the trade (units).
        quote: quote balance after the trade, gas paid (units).
        value_before: portfolio value at bar t's close before the trade (USD).
        value_after: portfolio value at bar t + 1's close (USD).
        reward: the environment's reward (log value change, minus any turnover penalty).
        terminated: the portfolio is ruined; the run stops.
    """

    t: int
    observation: np.ndarray | None
    target: float
    exposure_before: float
    fill: Fill
    base_before: int
    base: int
    quote: int
    value_before: float
    value_after: float
    reward: float
    terminated: bool

    @property
    def trade(self) -> TradeResult:
        return self.fill.trade


StepCallback = Callable[[Step], None]


# --- policies ------------------------------------------------------------------------------------
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

    A run keeps the model's observation settings (look-back, action kind, exposure levels) and
    replaces its costs (pool, starting value) with the run's.
    """

    name: str
    predict: Predict
    env_config: EnvConfig = field(default_factory=lambda: _default_env_config())
    model_id: str | None = None
    strategy_names: tuple[str, ...] | None = None
    """The strategies whose signals the model was trained on, in order (None: unchecked)."""


Policy = TargetPolicy | ModelPolicy


def buy_and_hold(data: MarketData) -> TargetPolicy:
    """Return the buy-and-hold baseline: fully invested from the first decision."""
    return TargetPolicy("buy-and-hold", "baseline", np.ones(data.bars))


def flat(data: MarketData) -> TargetPolicy:
    """Return the flat baseline: always in cash (never trades)."""
    return TargetPolicy("flat", "baseline", np.zeros(data.bars))


def _default_env_config() -> EnvConfig:
    from agent.env.trading_env import EnvConfig

    return EnvConfig()


# --- the result ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RolloutResult:
    """Everything one policy did over one window; the one result type of every run.

    `equity`, `open_time` and `close` hold one entry per valuation bar (start .. last decision
    + 1: one more than decisions); the other arrays hold one entry per decision. Money is in
    the quote currency (USD); `base` is in base tokens.
    """

    name: str
    kind: PolicyKind
    start: int
    open_time: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    target: np.ndarray
    exposure_before: np.ndarray
    exposure: np.ndarray
    side: np.ndarray
    traded_quote: np.ndarray
    fee_quote: np.ndarray
    impact_quote: np.ndarray
    gas_quote: np.ndarray
    base: np.ndarray
    quote: np.ndarray
    reward: np.ndarray
    terminated: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def decisions(self) -> int:
        return len(self.target)

    @property
    def steps(self) -> int:
        return len(self.target)

    @property
    def swaps(self) -> int:
        return int(np.count_nonzero(self.side))

    @property
    def traded(self) -> np.ndarray:
        """Whether each decision swapped."""
        return self.side != 0

    @property
    def cost_quote(self) -> np.ndarray:
        """Fee + price impact + gas of each decision, in USD."""
        return self.fee_quote + self.impact_quote + self.gas_quote

    @property
    def initial_value_quote(self) -> float:
        return float(self.equity[0])

    @property
    def value_quote(self) -> np.ndarray:
        """Portfolio value after each decision, at the next bar's close."""
        return self.equity[1:]

    @property
    def fingerprint(self) -> str:
        """A sha256 over every decision and outcome of the run, hashed once (never on-chain)."""
        digest = hashlib.sha256()
        for name in _FINGERPRINTED:
            digest.update(np.ascontiguousarray(getattr(self, name), dtype="<f8").tobytes())
        return "sha256:" + digest.hexdigest()


_FINGERPRINTED = ("open_time", "equity", "target", "side", "base", "quote")


# --- the rollout ---------------------------------------------------------------------------------
_CHUNK = 20_000
"""Bars the kernel runs between two progress reports."""
Progress = Callable[[int, int], None]


def rollout(
    data: MarketData,
    policy: Policy,
    config: EnvConfig,
    start: int,
    end: int,
    *,
    visible: np.ndarray | None = None,
    callback: StepCallback | None = None,
    exact: bool = False,
    progress: Progress | None = None,
) -> RolloutResult:
    """Run `policy` over decisions at bars start .. end - 1 of `data`, valued at bar `end`.

    The run goes through the compiled kernel (`agent.env.kernel`), the policy's forward pass
    included when it is a packed MLP (a `NumpyPolicy`); with a `callback` or `exact`, it goes
    through the exact integer mirror instead, bar by bar, because what the callback does with
    a step (send it on-chain) needs the mirror's wei.

    Args:
        data: the market (it must reach the close of bar `end`).
        policy: a `ModelPolicy` (observes through the spec) or a `TargetPolicy`.
        config: costs, starting value and turnover penalty; for a model, its observation
            settings come from `policy.env_config`.
        start: the first decision bar.
        end: the bar whose close values the last decision.
        visible: which strategies the model may see (default: all); attribution masks here.
        callback: called after every decision with its `Step` (e.g. to send it on-chain).
        exact: run the exact integer mirror even without a callback.
        progress: called with (decisions done, decisions in total) every 20,000 bars.

    Raises:
        ConfigError: the window does not fit the data or the policy's look-back.
    """
    env_config = _run_config(policy, config, start)
    if not 0 <= start < end <= data.bars - 1:
        raise ConfigError(
            f"window: decisions on bars [{start}, {end}) must lie within "
            f"[0, {data.bars - 1}) of the {data.bars} bars"
        )
    mask = np.ones(data.n_strategies, dtype=bool) if visible is None else visible
    mask = np.ascontiguousarray(mask, dtype=bool)
    if callback is not None or exact:
        from agent.env.exact import exact_rows

        rows, terminated = exact_rows(data, policy, env_config, start, end, mask, callback)
    else:
        rows, terminated = _kernel_rows(data, policy, env_config, start, end, mask, progress)
    if progress is not None:
        progress(rows.shape[1], end - start)
    return _result(data, policy, env_config, start, rows, terminated)


def _result(
    data: MarketData,
    policy: Policy,
    env_config: EnvConfig,
    start: int,
    rows: np.ndarray,
    terminated: bool,
) -> RolloutResult:
    n = rows.shape[1]
    kind: PolicyKind = "model" if isinstance(policy, ModelPolicy) else policy.kind
    extra: dict[str, Any] = {}
    if isinstance(policy, ModelPolicy) and policy.model_id:
        extra["model_id"] = policy.model_id
    columns = {name: rows[i] for i, name in enumerate(COLUMNS)}  # contiguous views
    equity = np.empty(n + 1, dtype="float64")
    equity[0] = env_config.initial_value_quote
    equity[1:] = columns.pop("equity")
    return RolloutResult(
        name=policy.name,
        kind=kind,
        start=start,
        open_time=np.asarray(data.open_time[start : start + n + 1]),
        close=np.asarray(data.close[start : start + n + 1], dtype="float64"),
        equity=equity,
        side=columns.pop("side").astype("int8"),
        terminated=terminated,
        extra=extra,
        **columns,
    )


COLUMNS = (
    "equity",
    "target",
    "exposure_before",
    "exposure",
    "side",
    "traded_quote",
    "fee_quote",
    "impact_quote",
    "gas_quote",
    "base",
    "quote",
    "reward",
)
"""The per-decision columns of a run, in the order the kernel and the exact path fill them."""


# --- the kernel path -----------------------------------------------------------------------------
def _kernel_rows(
    data: MarketData,
    policy: Policy,
    cfg: EnvConfig,
    start: int,
    end: int,
    visible: np.ndarray,
    progress: Progress | None,
) -> tuple[np.ndarray, bool]:
    from agent.env import kernel

    kernel.ensure_compiled()
    close = np.ascontiguousarray(data.close, dtype="float64")
    p = kernel.params(cfg.pool, cfg.turnover_penalty, cfg.initial_value_quote)
    state = kernel.initial_state(cfg.pool, float(close[start]), cfg.initial_value_quote)
    rows = np.zeros((len(COLUMNS), end - start))
    run = _kernel_runner(data, policy, cfg, close, p, state, rows, visible, start)
    for chunk in range(start, end, _CHUNK):
        stop = min(end, chunk + _CHUNK)
        made = run(chunk, stop)
        if made < stop - chunk:
            return rows[:, : chunk - start + made], True
        if progress is not None and stop < end:
            progress(stop - start, end - start)
    return rows, False


def _kernel_runner(
    data: MarketData,
    policy: Policy,
    cfg: EnvConfig,
    close: np.ndarray,
    p: np.ndarray,
    state: np.ndarray,
    rows: np.ndarray,
    visible: np.ndarray,
    start: int,
) -> Callable[[int, int], int]:
    """Return (first bar, end bar) -> decisions made, running the policy on the kernel."""
    from agent.env import kernel

    def row_view(chunk: int, stop: int) -> np.ndarray:
        return rows[:, chunk - start : stop - start]

    if isinstance(policy, TargetPolicy):
        targets = checked_targets(policy, data.bars)
        band = float(policy.rebalance_band)

        def run_targets(chunk: int, stop: int) -> int:
            view = row_view(chunk, stop)
            return int(kernel.run_targets(state, p, close, targets, band, chunk, stop, view))

        return run_targets
    spec = cfg.spec(data.strategy_names)
    features = np.ascontiguousarray(data.features, dtype=np.float32)
    signals = np.ascontiguousarray(data.signals, dtype=np.float32)
    mask = np.ascontiguousarray(data.mask, dtype=bool)
    network = getattr(policy.predict, "network", None)
    if network is not None:
        if network.n_inputs != spec.observation_size:
            raise ModelError(
                f"observation has {spec.observation_size} values; the policy expects "
                f"{network.n_inputs}"
            )
        levels = np.asarray(spec.exposure_levels, dtype="float64")
        no_observations = np.zeros((0, spec.observation_size), dtype=np.float32)

        def run_network(chunk: int, stop: int) -> int:
            return int(
                kernel.run_network(
                    state, p, close, features, signals, mask, visible, spec.lookback_bars,
                    levels, network.weights, network.biases, network.sizes,
                    network.activations, network.head, network.low, network.high,
                    chunk, stop, row_view(chunk, stop), no_observations,
                )
            )  # fmt: skip

        return run_network
    predict = policy.predict
    trade = np.zeros(kernel.TRADE_SIZE)

    def run_python(chunk: int, stop: int) -> int:
        view = row_view(chunk, stop)
        exposure_now = float(kernel.exposure_of(state, float(close[chunk])))
        for t in range(chunk, stop):
            observation = spec.observe(features, signals, mask, t, exposure_now, visible)
            target = spec.target_exposure(predict(observation))
            kernel.env_bar(state, p, close, t, target, view, t - chunk, trade)
            if trade[kernel.T_RUINED]:
                return t - chunk + 1
            exposure_now = float(trade[kernel.T_NEXT_EXPOSURE])
        return stop - chunk

    return run_python


def checked_targets(policy: TargetPolicy, bars: int) -> np.ndarray:
    if len(policy.targets) != bars:
        raise ConfigError(
            f"policy {policy.name!r} has {len(policy.targets)} targets for {bars} bars"
        )
    return np.ascontiguousarray(np.clip(np.asarray(policy.targets, dtype="float64"), 0.0, 1.0))


def _run_config(policy: Policy, config: EnvConfig, start: int) -> EnvConfig:
    """Return the environment of a run: the run's costs, the model's observation settings."""
    if isinstance(policy, ModelPolicy):
        model = policy.env_config
        if start < model.lookback_bars - 1:
            raise ConfigError(
                f"model {policy.name!r} looks back {model.lookback_bars} bars: the first "
                f"decision must be at bar {model.lookback_bars - 1} or later, not {start}"
            )
        return replace(
            config,
            lookback_bars=model.lookback_bars,
            action=model.action,
            exposure_levels=model.exposure_levels,
            first_bar=model.lookback_bars - 1,
            strategy_dropout=0.0,
        )
    return replace(config, lookback_bars=1, first_bar=0, strategy_dropout=0.0)


def log_return(result: RolloutResult) -> float:
    """Return log(final value / initial value) of a run (-inf when ruined to zero)."""
    final = float(result.equity[-1])
    initial = float(result.equity[0])
    return math.log(final / initial) if final > 0 else -math.inf
