"""The one rollout: a policy run through a window of a market, bar by bar, with a callback.

Everything that runs a policy over bars goes through `rollout`: training validation and the
test split, the promotion gate, the backtest engine (off-chain and `--onchain`, through a
per-step callback that sends each trade), attribution's masked re-runs and walk-forward. It is
to Agora what `evaluate_policy` is to stable-baselines3: one loop, a per-step callback.

The bar itself is stepped by `TradingEnv.advance`, which executes the target exposure through
`execute_target`: the pool is coupled to the bar's market price, then the portfolio is
rebalanced with the exact integer V2 math. The service decides its live bars with the same
`execute_target`, so one pool-stepping path serves training, backtests and the service.

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
from agent.env.spec import BASE_SCALE, QUOTE_SCALE
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
        rows, terminated = _exact_rows(data, policy, env_config, start, end, mask, callback)
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
        targets = _checked_targets(policy, data.bars)
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


def _checked_targets(policy: TargetPolicy, bars: int) -> np.ndarray:
    if len(policy.targets) != bars:
        raise ConfigError(
            f"policy {policy.name!r} has {len(policy.targets)} targets for {bars} bars"
        )
    return np.ascontiguousarray(np.clip(np.asarray(policy.targets, dtype="float64"), 0.0, 1.0))


# --- the exact path ------------------------------------------------------------------------------
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


def _exact_rows(
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
    targets = _checked_targets(policy, data.bars).tolist()
    band = policy.rebalance_band

    def rule(t: int) -> tuple[float, np.ndarray | None]:
        target = targets[t]
        if band > 0.0 or target != target:  # NaN: hold
            now = book.exposure_now()
            if target != target or abs(target - now) < band:
                target = min(1.0, now)
        return target, None

    return rule


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
